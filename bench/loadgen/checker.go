package main

// Every client's messages, checked: each benchmark message's data carries, right after its
// "ts", the publisher process's "run", the sending thread's "worker" and "seq", that thread's
// count of the messages it sent to this client's channel (0, 1, 2, ...):
//
//	{"ts":1764950000123456789,"run":81985529,"worker":0,"seq":7,...}
//
// A client must get every seq of every worker once and in order. Per client this keeps the next
// expected seq of each worker and a count: a few words and no lock on the delivery path (a
// client's messages are read by its own goroutine); anomalies, rare, take a lock.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runs are the two newest publishers' runs any client saw (a run is the publisher's start time in
// microseconds since the epoch, so a later publisher's is larger).
var runs struct {
	mu               sync.Mutex
	latest, previous int64
}

// latestRun is the newest run any client saw.
func latestRun() int64 {
	runs.mu.Lock()
	defer runs.mu.Unlock()
	return runs.latest
}

func sawRun(run int64) {
	runs.mu.Lock()
	if run > runs.latest {
		runs.previous, runs.latest = runs.latest, run
	}
	runs.mu.Unlock()
}

// staleRuns is the newest run a measurement that starts at now (ns since the epoch) must not
// count: messages of it or older are a former publisher's, still being delivered. That is the
// newest run seen, unless it started within the last half second: then it may be the new
// publisher's, whose first messages came before the measure command, and the one before it is.
func staleRuns(now int64) int64 {
	runs.mu.Lock()
	defer runs.mu.Unlock()
	if runs.latest*1000 < now-int64(500*time.Millisecond) {
		return runs.latest
	}
	return runs.previous
}

// maxWorkers is how many publishing threads of one run a client tells apart.
const maxWorkers = 16

// fields are what a stamped message carries besides its stamp; ok is false when any is missing.
type fields struct {
	run, worker, seq int64
	ok               bool
}

type checker struct {
	run       atomic.Int64 // the run these counts are of; a message of another run resets them
	count     atomic.Int64 // messages of that run
	next      [maxWorkers]int64
	gaps      atomic.Int64 // a seq past the next expected one: the ones between are lost (or late)
	backwards atomic.Int64 // a seq before the next expected one: a duplicate (or a late one)
	unchecked atomic.Int64 // stamped messages without run, worker and seq
	mu        sync.Mutex
	first     string // the first anomaly of the run, spelled out
}

func (k *checker) anomaly(text string) {
	k.mu.Lock()
	if k.first == "" {
		k.first = text
	}
	k.mu.Unlock()
}

// observe checks one message received by client id.
func (k *checker) observe(id int, f fields) {
	if !f.ok {
		k.unchecked.Add(1)
		return
	}
	if f.run != k.run.Load() {
		k.mu.Lock()
		k.next = [maxWorkers]int64{}
		k.first = ""
		k.mu.Unlock()
		k.count.Store(0)
		k.gaps.Store(0)
		k.backwards.Store(0)
		k.unchecked.Store(0)
		k.run.Store(f.run)
		sawRun(f.run)
	}
	k.count.Add(1)
	if f.worker < 0 || f.worker >= maxWorkers {
		k.gaps.Add(1)
		k.anomaly(fmt.Sprintf("client %d: worker %d out of range (at most %d publishing threads)",
			id, f.worker, maxWorkers))
		return
	}
	want := k.next[f.worker]
	switch {
	case f.seq == want:
		k.next[f.worker] = want + 1
	case f.seq > want:
		k.gaps.Add(1)
		k.anomaly(fmt.Sprintf("client %d: worker %d: seq %d missing, got %d next", id, f.worker,
			want, f.seq))
		k.next[f.worker] = f.seq + 1
	default:
		k.backwards.Add(1)
		k.anomaly(fmt.Sprintf("client %d: worker %d: seq %d again or late, after %d", id,
			f.worker, f.seq, want-1))
	}
}

// parseStamped reads the stamp whose key starts at i, then the run, worker and seq that follow
// it in that order; quoted: the keys are escaped inside a JSON string (a Pusher event's data).
func parseStamped(frame []byte, i int, quoted bool) (int64, fields) {
	keys := &plainKeys
	if quoted {
		keys = &quotedKeys
	}
	j := i + len(keys[0])
	ts, j, ok := digits(frame, j)
	var f fields
	if !ok {
		return 0, f
	}
	values := [3]*int64{&f.run, &f.worker, &f.seq}
	for k, v := range values {
		key := keys[k+1]
		if len(frame) < j+len(key) || string(frame[j:j+len(key)]) != string(key) {
			return ts, f
		}
		if *v, j, ok = digits(frame, j+len(key)); !ok {
			return ts, f
		}
	}
	f.ok = true
	return ts, f
}

var (
	plainKeys  = [4][]byte{[]byte(`"ts":`), []byte(`,"run":`), []byte(`,"worker":`), []byte(`,"seq":`)}
	quotedKeys = [4][]byte{[]byte(`\"ts\":`), []byte(`,\"run\":`), []byte(`,\"worker\":`),
		[]byte(`,\"seq\":`)}
)

func digits(frame []byte, j int) (int64, int, bool) {
	var v int64
	start := j
	for j < len(frame) && frame[j] >= '0' && frame[j] <= '9' {
		v = v*10 + int64(frame[j]-'0')
		j++
	}
	return v, j, j > start
}

// summarize is the check of the latest run any client saw: each client's count of it (-1: not
// connected; 0: none of that run), and the clients with an anomaly.
func summarize(clients []*client) map[string]any {
	latest := latestRun()
	counts := make([]int64, len(clients))
	var gaps, backwards, unchecked, bad int64
	first := ""
	for i, c := range clients {
		if c == nil {
			counts[i] = -1
			continue
		}
		k := &c.check
		unchecked += k.unchecked.Load()
		if k.run.Load() != latest {
			continue
		}
		counts[i] = k.count.Load()
		g, b := k.gaps.Load(), k.backwards.Load()
		if g+b > 0 {
			bad++
			gaps += g
			backwards += b
			if first == "" {
				k.mu.Lock()
				first = k.first
				k.mu.Unlock()
			}
		}
	}
	return map[string]any{
		"run": latest, "counts": counts, "gaps": gaps, "backwards": backwards,
		"bad_clients": bad, "first": first, "unchecked": unchecked,
	}
}
