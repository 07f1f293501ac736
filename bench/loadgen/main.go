// Command loadgen opens many WebSocket clients against a tidings gateway or a python-socketio
// server, subscribes each to a channel (a room for Socket.IO), and measures the deliveries it
// gets: how many, how fast, and the publish-to-client latency of each one.
//
// -proto picks what the clients speak: "tidings" (the gateway's /ws), "socketio" (Engine.IO v4 /
// Socket.IO v5), "pusher" (the Pusher Channels protocol 7 as pusher-js speaks it, against the
// gateway's /app/{key}: -url ws://host:port/app/KEY), or "centrifugo" (Centrifugo's JSON
// protocol: -url ws://host:port/connection/websocket; a connect command with the client's token
// if -tokens is given, a subscribe command, pushes batched several to a frame one per line, and
// an empty {} ping answered with {}).
//
// Every client's messages are checked (see checker.go): the data carries "run" (one publisher
// process), "worker" (its sending thread) and "seq" (that thread's count of messages to this
// client's channel, from 0); a client must get every seq of every worker once, in order. The
// result's "check" has, for the latest run seen, each client's count and the clients with a
// gap, a duplicate or a reorder, with the first of them spelled out.
//
// Every benchmark message carries its publish time as "ts" (nanoseconds since the epoch) in its
// data; latency is the receive time minus that stamp (same machine, same clock). A Pusher event
// carries its data as a JSON string, so there the stamp reads \"ts\":<digits>.
//
// It is driven over stdin/stdout by bench/run.py, one JSON object per output line:
//
//	{"event":"ready",...}              once every client is connected and subscribed
//	measure EXPECTED TIMEOUT_S IDLE_S  (stdin) reset the counters, wait for EXPECTED deliveries,
//	                                   TIMEOUT_S seconds, or IDLE_S seconds without a delivery;
//	                                   a former publisher's messages still arriving are not
//	                                   counted (see staleRuns)
//	{"event":"result",...}             the summary of that window
//	quit                               (stdin, or EOF) close every client and exit
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The latency histogram: logarithmic buckets, 64 per power of two (about 1.1 % wide).
const (
	bucketsPerOctave = 64
	bucketCount      = 40 * bucketsPerOctave // up to 2^40 ns, about 18 minutes
	shardCount       = 16
)

type histogram struct {
	shards [shardCount][bucketCount]atomic.Uint64
}

func bucketOf(ns int64) int {
	if ns < 1 {
		ns = 1
	}
	b := int(math.Log2(float64(ns)) * bucketsPerOctave)
	if b >= bucketCount {
		b = bucketCount - 1
	}
	return b
}

// upperNs is the upper bound of a bucket, in nanoseconds.
func upperNs(b int) float64 { return math.Exp2(float64(b+1) / bucketsPerOctave) }

func (h *histogram) add(shard int, ns int64) { h.shards[shard%shardCount][bucketOf(ns)].Add(1) }

func (h *histogram) reset() {
	for s := range h.shards {
		for b := range h.shards[s] {
			h.shards[s][b].Store(0)
		}
	}
}

func (h *histogram) merged() []uint64 {
	out := make([]uint64, bucketCount)
	for s := range h.shards {
		for b := range h.shards[s] {
			out[b] += h.shards[s][b].Load()
		}
	}
	return out
}

// quantileMs is the upper bound of the bucket holding quantile q, in milliseconds.
func quantileMs(counts []uint64, total uint64, q float64) float64 {
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for b, c := range counts {
		seen += c
		if seen >= rank {
			return upperNs(b) / 1e6
		}
	}
	return upperNs(bucketCount-1) / 1e6
}

type config struct {
	url         string
	proto       string
	n           int
	channel     string
	tokens      []string
	concurrency int
	connectWait time.Duration
	ping        time.Duration
}

type stats struct {
	hist        histogram
	count       atomic.Int64
	stray       atomic.Int64
	maxNs       atomic.Int64
	sumNs       atomic.Int64
	firstNs     atomic.Int64
	lastNs      atomic.Int64
	minTs       atomic.Int64
	closed      atomic.Int64
	errorFrames atomic.Int64
	measuring   atomic.Bool
	staleRun    atomic.Int64 // messages of this run or older are not counted (a former publisher's)
}

func (s *stats) reset() {
	s.measuring.Store(false)
	s.hist.reset()
	s.count.Store(0)
	s.maxNs.Store(0)
	s.sumNs.Store(0)
	s.firstNs.Store(0)
	s.lastNs.Store(0)
	s.minTs.Store(math.MaxInt64)
	s.errorFrames.Store(0)
}

// deliver records and checks one message: stamp ts, received at now (both ns since the epoch).
func (s *stats) deliver(c *client, ts, now int64, f fields) {
	c.check.observe(c.id, f)
	if f.ok && f.run <= s.staleRun.Load() {
		s.stray.Add(1)
		return
	}
	s.record(c.id, ts, now)
}

// record one delivery stamped ts, received at now (both ns since the epoch).
func (s *stats) record(shard int, ts, now int64) {
	if !s.measuring.Load() {
		s.stray.Add(1)
		return
	}
	lat := now - ts
	s.hist.add(shard, lat)
	s.count.Add(1)
	s.sumNs.Add(lat)
	for {
		old := s.maxNs.Load()
		if lat <= old || s.maxNs.CompareAndSwap(old, lat) {
			break
		}
	}
	s.firstNs.CompareAndSwap(0, now)
	s.lastNs.Store(now)
	for {
		old := s.minTs.Load()
		if ts >= old || s.minTs.CompareAndSwap(old, ts) {
			break
		}
	}
}

var (
	tsKey = []byte(`"ts":`)
	// tsKeyQuoted is the stamp inside a JSON string: a Pusher event's data.
	tsKeyQuoted = []byte(`\"ts\":`)
)

// stamp finds "ts":<digits> in a frame without decoding all of it.
func stamp(frame []byte) (int64, bool) { return stampAt(frame, tsKey) }

// stampAt finds key<digits> in a frame.
func stampAt(frame, key []byte) (int64, bool) {
	i := bytes.Index(frame, key)
	if i < 0 {
		return 0, false
	}
	var v int64
	j := i + len(key)
	start := j
	for j < len(frame) && frame[j] >= '0' && frame[j] <= '9' {
		v = v*10 + int64(frame[j]-'0')
		j++
	}
	return v, j > start
}

type client struct {
	id    int
	conn  *websocket.Conn
	mu    sync.Mutex // gorilla allows one writer at a time
	check checker
}

func (c *client) write(text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.WriteMessage(websocket.TextMessage, []byte(text))
}

func (cfg *config) channelFor(i int) string {
	return strings.ReplaceAll(cfg.channel, "{i}", strconv.Itoa(i))
}

func (cfg *config) dialURL(i int) (string, error) {
	u, err := url.Parse(cfg.url)
	if err != nil {
		return "", err
	}
	q := u.Query()
	if cfg.proto == "socketio" {
		u.Path = "/socket.io/"
		q.Set("EIO", "4")
		q.Set("transport", "websocket")
	} else if cfg.proto == "pusher" {
		// What pusher-js 8 asks for; the path (/app/KEY) comes with -url.
		q.Set("protocol", "7")
		q.Set("client", "js")
		q.Set("version", "8.4.0")
		q.Set("flash", "false")
	} else if cfg.proto == "centrifugo" {
		// The token goes in the connect command.
	} else if len(cfg.tokens) > 0 {
		q.Set("token", cfg.tokens[i%len(cfg.tokens)])
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// open connects client i and subscribes it; it returns once the subscription is confirmed.
func (cfg *config) open(i int) (*client, error) {
	target, err := cfg.dialURL(i)
	if err != nil {
		return nil, err
	}
	dialer := websocket.Dialer{HandshakeTimeout: cfg.connectWait, ReadBufferSize: 4096, WriteBufferSize: 1024}
	conn, _, err := dialer.Dial(target, nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &client{id: i, conn: conn}
	conn.SetReadDeadline(time.Now().Add(cfg.connectWait))
	switch cfg.proto {
	case "socketio":
		err = c.joinSocketIO(cfg.channelFor(i))
	case "pusher":
		err = c.subscribePusher(cfg.channelFor(i))
	case "centrifugo":
		token := ""
		if len(cfg.tokens) > 0 {
			token = cfg.tokens[i%len(cfg.tokens)]
		}
		err = c.subscribeCentrifugo(token, cfg.channelFor(i))
	default:
		err = c.subscribeTidings(cfg.channelFor(i))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	return c, nil
}

func (c *client) read() (string, error) {
	_, data, err := c.conn.ReadMessage()
	return string(data), err
}

func (c *client) subscribeTidings(channel string) error {
	first, err := c.read()
	if err != nil {
		return fmt.Errorf("waiting for connected: %w", err)
	}
	if !strings.Contains(first, `"type":"connected"`) {
		return fmt.Errorf("expected connected, got %.200s", first)
	}
	frame, _ := json.Marshal(map[string]string{"type": "subscribe", "channel": channel})
	if err := c.write(string(frame)); err != nil {
		return err
	}
	for {
		text, err := c.read()
		if err != nil {
			return fmt.Errorf("waiting for subscribed: %w", err)
		}
		if strings.Contains(text, `"type":"subscribed"`) {
			return nil
		}
		if strings.Contains(text, `"type":"error"`) {
			return fmt.Errorf("subscribe refused: %.200s", text)
		}
	}
}

// subscribePusher waits for pusher:connection_established, subscribes to a public channel
// (no auth), and waits for pusher_internal:subscription_succeeded, answering pings meanwhile.
func (c *client) subscribePusher(channel string) error {
	first, err := c.read()
	if err != nil {
		return fmt.Errorf("waiting for pusher:connection_established: %w", err)
	}
	if !strings.Contains(first, `"event":"pusher:connection_established"`) {
		return fmt.Errorf("expected pusher:connection_established, got %.200s", first)
	}
	frame, _ := json.Marshal(map[string]any{
		"event": "pusher:subscribe", "data": map[string]string{"channel": channel},
	})
	if err := c.write(string(frame)); err != nil {
		return err
	}
	for {
		text, err := c.read()
		if err != nil {
			return fmt.Errorf("waiting for pusher_internal:subscription_succeeded: %w", err)
		}
		switch {
		case strings.Contains(text, `"event":"pusher_internal:subscription_succeeded"`):
			return nil
		case strings.Contains(text, `"event":"pusher:ping"`):
			if err := c.write(pusherPong); err != nil {
				return err
			}
		case strings.Contains(text, `"event":"pusher:error"`),
			strings.Contains(text, `"event":"pusher:subscription_error"`):
			return fmt.Errorf("subscribe refused: %.200s", text)
		}
	}
}

const (
	pusherPing = `{"event":"pusher:ping","data":{}}`
	pusherPong = `{"event":"pusher:pong","data":{}}`
)

// subscribeCentrifugo sends Centrifugo's connect command (with the token, if any) and a subscribe
// command, and waits for the reply to each, answering pings meanwhile. A reply is one line of a
// frame that may hold several.
func (c *client) subscribeCentrifugo(token, channel string) error {
	connect := map[string]any{}
	if token != "" {
		connect["token"] = token
	}
	frame, _ := json.Marshal(map[string]any{"id": 1, "connect": connect})
	if err := c.write(string(frame)); err != nil {
		return err
	}
	if err := c.awaitCentrifugoReply(`{"id":1,`, "connect"); err != nil {
		return err
	}
	frame, _ = json.Marshal(map[string]any{"id": 2, "subscribe": map[string]string{"channel": channel}})
	if err := c.write(string(frame)); err != nil {
		return err
	}
	return c.awaitCentrifugoReply(`{"id":2,`, "subscribe")
}

func (c *client) awaitCentrifugoReply(prefix, what string) error {
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for the %s reply: %w", what, err)
		}
		var found error
		done := false
		eachLine(data, func(line []byte) {
			switch {
			case isCentrifugoPing(line):
				if err := c.write("{}"); err != nil && found == nil {
					found = err
				}
			case bytes.HasPrefix(line, []byte(prefix)):
				done = true
				if bytes.Contains(line, []byte(`"error":`)) && found == nil {
					found = fmt.Errorf("%s refused: %.200s", what, line)
				}
			}
		})
		if found != nil || done {
			return found
		}
	}
}

// eachLine calls f with every non-empty line of a frame: Centrifugo's JSON protocol batches
// several replies and pushes into one frame, one per line.
func eachLine(frame []byte, f func([]byte)) {
	for len(frame) > 0 {
		i := bytes.IndexByte(frame, '\n')
		line := frame
		if i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		if len(line) > 0 {
			f(line)
		}
	}
}

// isCentrifugoPing tells the server's ping: an empty command, {}.
func isCentrifugoPing(line []byte) bool { return len(line) == 2 && line[0] == '{' && line[1] == '}' }

// joinSocketIO speaks Engine.IO v4 / Socket.IO v5: open packet, namespace connect, then a
// "join" event with an acknowledgement, answering server pings meanwhile.
func (c *client) joinSocketIO(room string) error {
	open, err := c.read()
	if err != nil || !strings.HasPrefix(open, "0{") {
		return fmt.Errorf("expected the Engine.IO open packet, got %.200q (%v)", open, err)
	}
	if err := c.write("40"); err != nil {
		return err
	}
	joined := false
	for {
		text, err := c.read()
		if err != nil {
			return fmt.Errorf("socket.io handshake: %w", err)
		}
		switch {
		case text == "2":
			if err := c.write("3"); err != nil {
				return err
			}
		case strings.HasPrefix(text, "40"):
			arg, _ := json.Marshal(room)
			if err := c.write(`420["join",` + string(arg) + `]`); err != nil {
				return err
			}
			joined = true
		case strings.HasPrefix(text, "44"):
			return fmt.Errorf("namespace connect refused: %.200s", text)
		case joined && strings.HasPrefix(text, "430"):
			return nil
		}
	}
}

// loop reads until the connection ends, recording and checking every stamped message.
func (cfg *config) loop(c *client, st *stats, wg *sync.WaitGroup) {
	defer wg.Done()
	socketio := cfg.proto == "socketio"
	pusher := cfg.proto == "pusher"
	centrifugo := cfg.proto == "centrifugo"
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			st.closed.Add(1)
			return
		}
		now := time.Now().UnixNano()
		if centrifugo {
			var pong error
			eachLine(data, func(line []byte) {
				if i := bytes.Index(line, tsKey); i >= 0 {
					ts, fields := parseStamped(line, i, false)
					st.deliver(c, ts, now, fields)
				} else if isCentrifugoPing(line) {
					pong = errors.Join(pong, c.write("{}"))
				} else if bytes.Contains(line, centrifugoError) {
					st.errorFrames.Add(1)
				}
			})
			if pong != nil {
				st.closed.Add(1)
				return
			}
			continue
		}
		if socketio && len(data) == 1 && data[0] == '2' {
			if c.write("3") != nil {
				st.closed.Add(1)
				return
			}
			continue
		}
		if pusher {
			if i := bytes.Index(data, tsKeyQuoted); i >= 0 {
				ts, fields := parseStamped(data, i, true)
				st.deliver(c, ts, now, fields)
			} else if bytes.Contains(data, pusherPingEvent) {
				if c.write(pusherPong) != nil {
					st.closed.Add(1)
					return
				}
			} else if bytes.Contains(data, pusherErrorEvent) ||
				bytes.Contains(data, pusherSubscriptionError) {
				st.errorFrames.Add(1)
			}
			continue
		}
		if i := bytes.Index(data, tsKey); i >= 0 {
			ts, fields := parseStamped(data, i, false)
			st.deliver(c, ts, now, fields)
		} else if !socketio && bytes.Contains(data, errorType) {
			st.errorFrames.Add(1)
		}
	}
}

// centrifugoError marks a Centrifugo reply or disconnect carrying an error.
var centrifugoError = []byte(`"error":`)

// errorType marks a tidings error frame (a refusal); warm-up and control frames carry no "ts".
var errorType = []byte(`"type":"error"`)

// The Pusher frames the reader acts on besides events: the gateway's ping after a silence, and
// refusals.
var (
	pusherPingEvent         = []byte(`"event":"pusher:ping"`)
	pusherErrorEvent        = []byte(`"event":"pusher:error"`)
	pusherSubscriptionError = []byte(`"event":"pusher:subscription_error"`)
)

func emit(v map[string]any) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func main() {
	cfg := config{}
	var tokensFile string
	flag.StringVar(&cfg.url, "url", "ws://127.0.0.1:6001/ws", "server URL (ws://host:port[/ws])")
	flag.StringVar(&cfg.proto, "proto", "tidings", "tidings, socketio, pusher or centrifugo")
	flag.IntVar(&cfg.n, "n", 100, "connections")
	flag.StringVar(&cfg.channel, "channel", "bench.fanout", "channel (room) per client; {i} is its index")
	flag.StringVar(&tokensFile, "tokens", "", "file of connection tokens, one per line (tidings, centrifugo)")
	flag.IntVar(&cfg.concurrency, "concurrency", 64, "connections opened at once while ramping up")
	flag.DurationVar(&cfg.connectWait, "connect-timeout", 60*time.Second, "per-connection handshake timeout")
	flag.DurationVar(&cfg.ping, "ping", 20*time.Second, "tidings keep-alive ping interval")
	flag.Parse()
	switch cfg.proto {
	case "tidings", "socketio", "pusher", "centrifugo":
	default:
		fmt.Fprintln(os.Stderr, "loadgen: -proto must be tidings, socketio, pusher or centrifugo")
		os.Exit(2)
	}
	if tokensFile != "" {
		raw, err := os.ReadFile(tokensFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		cfg.tokens = strings.Fields(string(raw))
	}

	st := &stats{}
	clients := make([]*client, cfg.n)
	var readers sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	started := time.Now()
	work := make(chan int)
	var ramp sync.WaitGroup
	for w := 0; w < cfg.concurrency; w++ {
		ramp.Add(1)
		go func() {
			defer ramp.Done()
			for i := range work {
				c, err := cfg.open(i)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				clients[i] = c
				readers.Add(1)
				go cfg.loop(c, st, &readers)
			}
		}()
	}
	for i := 0; i < cfg.n; i++ {
		work <- i
	}
	close(work)
	ramp.Wait()
	ready := map[string]any{
		"event": "ready", "connected": int64(cfg.n) - failed.Load(), "failed": failed.Load(),
		"seconds": time.Since(started).Seconds(),
	}
	if e := firstErr.Load(); e != nil {
		ready["first_error"] = e
	}
	emit(ready)

	if cfg.proto == "tidings" || cfg.proto == "pusher" {
		// Each client pings once per interval at its own moment, as clients that connected at
		// different times do, not all 10,000 in one burst. Pusher clients send the same number
		// of pings as tidings' (pusher-js would ping only after activity_timeout of silence).
		ping := `{"type":"ping"}`
		if cfg.proto == "pusher" {
			ping = pusherPing
		}
		go func() {
			step := max(cfg.ping/time.Duration(max(len(clients), 1)), time.Microsecond)
			ticker := time.NewTicker(step)
			defer ticker.Stop()
			for i := 0; ; i = (i + 1) % len(clients) {
				<-ticker.C
				if c := clients[i]; c != nil {
					_ = c.write(ping)
				}
			}
		}()
	}

	stdin := bufio.NewScanner(os.Stdin)
	for stdin.Scan() {
		fields := strings.Fields(stdin.Text())
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "quit" {
			break
		}
		if fields[0] != "measure" || len(fields) < 3 {
			fmt.Fprintln(os.Stderr, "loadgen: unknown command:", stdin.Text())
			continue
		}
		expected, _ := strconv.ParseInt(fields[1], 10, 64)
		timeout, _ := strconv.ParseFloat(fields[2], 64)
		idle := 5.0
		if len(fields) > 3 {
			idle, _ = strconv.ParseFloat(fields[3], 64)
		}
		result := measure(st, expected, timeout, idle)
		result["check"] = summarize(clients)
		emit(result)
	}
	for _, c := range clients {
		if c != nil {
			_ = c.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.conn.Close()
		}
	}
}

func measure(st *stats, expected int64, timeout, idle float64) map[string]any {
	st.reset()
	st.staleRun.Store(staleRuns(time.Now().UnixNano()))
	closedBefore := st.closed.Load()
	strayBefore := st.stray.Load()
	st.measuring.Store(true)
	start := time.Now()
	deadline := start.Add(time.Duration(timeout * float64(time.Second)))
	reason := "complete"
	for st.count.Load() < expected {
		now := time.Now()
		if now.After(deadline) {
			reason = "timeout"
			break
		}
		if last := st.lastNs.Load(); last > 0 && float64(now.UnixNano()-last)/1e9 > idle {
			reason = "idle"
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	st.measuring.Store(false)
	count := st.count.Load()
	counts := st.hist.merged()
	var total uint64
	for _, c := range counts {
		total += c
	}
	// span: first to last delivery; fromPublish: earliest publish stamp to last delivery.
	span := float64(st.lastNs.Load()-st.firstNs.Load()) / 1e9
	rate, fromPublish, ratePublish := 0.0, 0.0, 0.0
	if span > 0 {
		rate = float64(count) / span
	}
	if count > 0 {
		fromPublish = float64(st.lastNs.Load()-st.minTs.Load()) / 1e9
		if fromPublish > 0 {
			ratePublish = float64(count) / fromPublish
		}
	}
	var hist [][2]float64
	for b, c := range counts {
		if c > 0 {
			hist = append(hist, [2]float64{upperNs(b) / 1e6, float64(c)})
		}
	}
	mean := 0.0
	if count > 0 {
		mean = float64(st.sumNs.Load()) / float64(count) / 1e6
	}
	return map[string]any{
		"event": "result", "reason": reason, "expected": expected, "count": count,
		"elapsed_s": time.Since(start).Seconds(), "span_s": span, "rate": rate,
		"from_publish_s": fromPublish, "rate_from_publish": ratePublish,
		"mean_ms": mean, "p50_ms": quantileMs(counts, total, 0.50),
		"p90_ms": quantileMs(counts, total, 0.90), "p99_ms": quantileMs(counts, total, 0.99),
		"p999_ms": quantileMs(counts, total, 0.999), "max_ms": float64(st.maxNs.Load()) / 1e6,
		"closed": st.closed.Load() - closedBefore, "stray": st.stray.Load() - strayBefore,
		"error_frames": st.errorFrames.Load(), "hist": hist,
	}
}
