package main

import "testing"

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
