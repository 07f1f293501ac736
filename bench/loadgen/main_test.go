package main

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// The frames as the gateway writes them (compact JSON): tidings' event, and Pusher's, whose data
// is a JSON string holding the message's data.
func TestStampFindsTheSendTimeInEitherProtocol(t *testing.T) {
	tidings := []byte(`{"type":"event","channel":"bench.fanout","event":"bench",` +
		`"data":{"ts":1764950000123456789,"seq":7},"position":"0:7"}`)
	pusher := []byte(`{"event":"bench","channel":"bench.fanout",` +
		`"data":"{\"ts\":1764950000123456789,\"seq\":7}"}`)
	if ts, ok := stamp(tidings); !ok || ts != 1764950000123456789 {
		t.Fatalf("tidings frame: got %d, %v", ts, ok)
	}
	if ts, ok := stampAt(pusher, tsKeyQuoted); !ok || ts != 1764950000123456789 {
		t.Fatalf("pusher frame: got %d, %v", ts, ok)
	}
	if _, ok := stamp(pusher); ok {
		t.Fatal("the unquoted key must not match inside a Pusher event's data string")
	}
}

func TestStampIgnoresFramesWithoutOne(t *testing.T) {
	for _, frame := range []string{
		`{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}`,
		`{"event":"bench","channel":"c","data":"{\"warmup\":true}"}`,
		`{"event":"bench","channel":"c","data":"{\"ts\":}"}`,
	} {
		if ts, ok := stampAt([]byte(frame), tsKeyQuoted); ok {
			t.Fatalf("%s: found %d", frame, ts)
		}
	}
}

func stamped(run, worker, seq int64) []byte {
	return []byte(fmt.Sprintf(`{"type":"event","channel":"c","event":"bench","data":`+
		`{"ts":1764950000123456789,"run":%d,"worker":%d,"seq":%d,"channel":"c"}}`, run, worker, seq))
}

func observeAll(k *checker, frames ...[]byte) {
	for _, frame := range frames {
		i := bytes.Index(frame, tsKey)
		_, f := parseStamped(frame, i, false)
		k.observe(3, f)
	}
}

func TestParseStampedReadsRunWorkerAndSeqInEitherQuoting(t *testing.T) {
	ts, f := parseStamped(stamped(42, 5, 9), bytes.Index(stamped(42, 5, 9), tsKey), false)
	if ts != 1764950000123456789 || f != (fields{42, 5, 9, true}) {
		t.Fatalf("plain: %d %+v", ts, f)
	}
	pusher := []byte(`{"event":"bench","data":"{\"ts\":17,\"run\":4,\"worker\":1,\"seq\":0}"}`)
	ts, f = parseStamped(pusher, bytes.Index(pusher, tsKeyQuoted), true)
	if ts != 17 || f != (fields{4, 1, 0, true}) {
		t.Fatalf("pusher: %d %+v", ts, f)
	}
	bare := []byte(`{"data":{"ts":17,"seq":3}}`)
	if ts, f = parseStamped(bare, bytes.Index(bare, tsKey), false); ts != 17 || f.ok {
		t.Fatalf("a stamp without run/worker/seq must be unchecked: %d %+v", ts, f)
	}
}

func TestCheckerAcceptsEveryWorkersSequenceInterleaved(t *testing.T) {
	var k checker
	observeAll(&k, stamped(1, 0, 0), stamped(1, 1, 0), stamped(1, 1, 1), stamped(1, 0, 1),
		stamped(1, 0, 2))
	if k.count.Load() != 5 || k.gaps.Load() != 0 || k.backwards.Load() != 0 || k.first != "" {
		t.Fatalf("count %d gaps %d backwards %d first %q", k.count.Load(), k.gaps.Load(),
			k.backwards.Load(), k.first)
	}
}

func TestCheckerNamesTheFirstLossDuplicateOrReorder(t *testing.T) {
	for name, tc := range map[string]struct {
		frames          [][]byte
		gaps, backwards int64
		first           string
	}{
		"loss":      {[][]byte{stamped(1, 0, 0), stamped(1, 0, 2)}, 1, 0, "client 3: worker 0: seq 1 missing, got 2 next"},
		"duplicate": {[][]byte{stamped(1, 0, 0), stamped(1, 0, 1), stamped(1, 0, 1)}, 0, 1, "client 3: worker 0: seq 1 again or late, after 1"},
		"reorder":   {[][]byte{stamped(1, 2, 1), stamped(1, 2, 0)}, 1, 1, "client 3: worker 2: seq 0 missing, got 1 next"},
		"worker":    {[][]byte{stamped(1, 99, 0)}, 1, 0, "client 3: worker 99 out of range (at most 16 publishing threads)"},
	} {
		var k checker
		observeAll(&k, tc.frames...)
		if k.gaps.Load() != tc.gaps || k.backwards.Load() != tc.backwards || k.first != tc.first {
			t.Errorf("%s: gaps %d backwards %d first %q", name, k.gaps.Load(), k.backwards.Load(), k.first)
		}
	}
}

func TestANewRunStartsEveryCountAfresh(t *testing.T) {
	var k checker
	observeAll(&k, stamped(1, 0, 0), stamped(1, 0, 5), stamped(2, 0, 0), stamped(2, 0, 1))
	if k.run.Load() != 2 || k.count.Load() != 2 || k.gaps.Load() != 0 || k.first != "" {
		t.Fatalf("run %d count %d gaps %d first %q", k.run.Load(), k.count.Load(), k.gaps.Load(), k.first)
	}
}

func TestSummarizeCountsTheLatestRunPerClient(t *testing.T) {
	a, b := &client{id: 0}, &client{id: 2}
	observeAll(&a.check, stamped(7, 0, 0), stamped(7, 0, 1))
	observeAll(&b.check, stamped(7, 0, 0), stamped(7, 0, 2))
	got := summarize([]*client{a, nil, b})
	counts := got["counts"].([]int64)
	if got["run"] != int64(7) || counts[0] != 2 || counts[1] != -1 || counts[2] != 2 ||
		got["bad_clients"] != int64(1) || got["gaps"] != int64(1) ||
		got["first"] != "client 3: worker 0: seq 1 missing, got 2 next" {
		t.Fatalf("%+v", got)
	}
}

func TestEachLineSplitsCentrifugosBatchedFrames(t *testing.T) {
	frame := []byte("{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"ts\":1,\"run\":1,\"worker\":0,\"seq\":0}}}}\n" +
		"{}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"ts\":2,\"run\":1,\"worker\":0,\"seq\":1}}}}")
	var lines []string
	eachLine(frame, func(line []byte) { lines = append(lines, string(line)) })
	if len(lines) != 3 || !isCentrifugoPing([]byte(lines[1])) || isCentrifugoPing([]byte(lines[0])) {
		t.Fatalf("%q", lines)
	}
	ts, f := parseStamped([]byte(lines[2]), bytes.Index([]byte(lines[2]), tsKey), false)
	if ts != 2 || f != (fields{1, 0, 1, true}) {
		t.Fatalf("%d %+v", ts, f)
	}
	eachLine([]byte("{}"), func(line []byte) {
		if !isCentrifugoPing(line) {
			t.Fatalf("a lone ping: %q", line)
		}
	})
}

func TestAMeasurementSkipsAFormerPublishersMessages(t *testing.T) {
	runs.latest, runs.previous = 0, 0
	start := time.Now().UnixNano()
	old := (start - int64(3*time.Second)) / 1000
	sawRun(old)
	if got := staleRuns(start); got != old {
		t.Fatalf("a publisher that started 3 s before the measurement is stale: got %d", got)
	}
	fresh := (start - int64(10*time.Millisecond)) / 1000
	sawRun(fresh)
	if got := staleRuns(start); got != old {
		t.Fatalf("a publisher that started just before the measurement is counted: got %d", got)
	}
	st := &stats{}
	st.reset()
	st.staleRun.Store(old)
	st.measuring.Store(true)
	c := &client{id: 1}
	st.deliver(c, start, start, fields{old, 0, 0, true})
	st.deliver(c, start, start, fields{fresh, 0, 0, true})
	if st.count.Load() != 1 || st.stray.Load() != 1 || c.check.count.Load() != 1 {
		t.Fatalf("count %d stray %d checked %d", st.count.Load(), st.stray.Load(), c.check.count.Load())
	}
}
