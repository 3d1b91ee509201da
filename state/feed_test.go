package state

import (
	"slices"
	"testing"
)

func TestFeedPublishCoalescesAndTakes(t *testing.T) {
	tests := []struct {
		name    string
		publish [][]string
		full    bool
		want    Changed
	}{
		{"names once each, sorted", [][]string{{"b", "a"}, {"a"}}, false, Changed{Names: []string{"a", "b"}}},
		{"full wins", [][]string{{"a"}}, true, Changed{Full: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFeed(true)
			for _, n := range tt.publish {
				f.Publish(n, false)
			}
			if tt.full {
				f.Publish(nil, true)
			}
			<-f.C // one pending signal, however many publishes
			select {
			case <-f.C:
				t.Fatal("signals were not coalesced")
			default:
			}
			got := f.Take()
			if got.Full != tt.want.Full || !slices.Equal(got.Names, tt.want.Names) {
				t.Fatalf("Take = %+v, want %+v", got, tt.want)
			}
			if again := f.Take(); again.Full || len(again.Names) > 0 {
				t.Fatalf("second Take = %+v, want nothing", again)
			}
			f.Close()
			if _, open := <-f.C; open {
				t.Fatal("C still open after Close")
			}
		})
	}
}
