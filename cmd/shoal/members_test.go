package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"shoal/handlers/admin"
)

func member(name string, load float64) admin.Member {
	return admin.Member{Name: name, State: admin.StateAlive, Load: load, Inflight: int(load * 64), Capacity: 64,
		PeerURL: "http://127.0.0.1:8080", Config: "c0ffee12"}
}

func threeMembers() []admin.Member {
	return []admin.Member{member("node-c", 0.75), member("node-a", 0.25), member("node-b", 0.5)}
}

// soloish is a cluster view with fixed members, for the admin handler.
type fixedView struct {
	self    string
	members []admin.Member
}

func (v fixedView) Self() string            { return v.self }
func (v fixedView) Members() []admin.Member { return v.members }

func Example_formatMembers() {
	formatMembers(os.Stdout, []admin.Member{
		{Name: "node-a", State: admin.StateAlive, Load: 0.25, Inflight: 16, Capacity: 64, PeerURL: "http://127.0.0.1:8080", Config: "3f9c2a1b"},
		{Name: "node-b", State: admin.StateAlive, Load: 0.5, Inflight: 32, Capacity: 64, PeerURL: "http://127.0.0.1:8081", Config: "3f9c2a1b", Draining: true},
		{Name: "node-c", State: admin.StateDead, Capacity: 64, PeerURL: "http://127.0.0.1:8082", Config: "7d01e5c4", Drift: []string{"shop.example"}},
	})
	// Output:
	// Name    State  Load  In-flight  Address                Config    Drift         Draining
	// node-a  alive  0.25  16/64      http://127.0.0.1:8080  3f9c2a1b  -             no
	// node-b  alive  0.50  32/64      http://127.0.0.1:8081  3f9c2a1b  -             yes
	// node-c  dead   0.00  0/64       http://127.0.0.1:8082  7d01e5c4  shop.example  no
}

func TestFormatMembers(t *testing.T) {
	ms := threeMembers()
	ms[0].State = admin.StateDead
	ms[1].Draining = true
	ms[2].Name = "evil\x1b[2Jname"
	ms[0].Drift = []string{"shop.example", "default"}
	var buf bytes.Buffer
	formatMembers(&buf, ms)
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header + 3 lines:\n%s", buf.String())
	}
	if f := strings.Fields(lines[0]); f[0] != "Name" || f[1] != "State" {
		t.Errorf("header %q", lines[0])
	}
	for i, want := range [][]string{
		{"evil?[2Jname", "alive", "0.50", "32/64", "http://127.0.0.1:8080", "c0ffee12", "-", "no"},
		{"node-a", "alive", "0.25", "16/64", "http://127.0.0.1:8080", "c0ffee12", "-", "yes"},
		{"node-c", "dead", "0.75", "48/64", "http://127.0.0.1:8080", "c0ffee12", "shop.example,default", "no"},
	} {
		if got := strings.Fields(lines[i+1]); !slices.Equal(got, want) {
			t.Errorf("line %d = %q, want %q", i+1, got, want)
		}
	}
}

func TestFormatMembersNaturalOrder(t *testing.T) {
	var ms []admin.Member
	for _, n := range []string{"n10", "n1", "n2", "n11", "n3"} {
		ms = append(ms, admin.Member{Name: n, State: admin.StateAlive, Capacity: 1})
	}
	var buf bytes.Buffer
	formatMembers(&buf, ms)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n")[1:] {
		got = append(got, strings.Fields(line)[0])
	}
	if want := []string{"n1", "n2", "n3", "n10", "n11"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if ms[0].Name != "n10" {
		t.Error("formatMembers reordered the caller's slice")
	}
}
func TestFetchCluster(t *testing.T) {
	srv := httptest.NewServer((&admin.Server{View: fixedView{self: "node-b", members: threeMembers()}}).Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := fetchCluster(ctx, nil, strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Self != "node-b" || len(st.Members) != 3 || st.Members[0].Name != "node-a" || st.Members[0].Load != 0.25 {
		t.Errorf("got %+v", st)
	}
	if _, err := fetchCluster(ctx, nil, srv.URL+"/nope"); err == nil {
		t.Error("a 404 base gave no error")
	}
}
