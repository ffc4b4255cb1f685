package handlers

import "os"

func ExampleFormatMembers() {
	FormatMembers(os.Stdout, []Member{
		{Name: "node-a", State: StateAlive, Load: 0.25, Inflight: 16, Capacity: 64, PeerURL: "http://127.0.0.1:8080", Config: "3f9c2a1b"},
		{Name: "node-b", State: StateAlive, Load: 0.5, Inflight: 32, Capacity: 64, PeerURL: "http://127.0.0.1:8081", Config: "3f9c2a1b", Draining: true},
		{Name: "node-c", State: StateDead, Capacity: 64, PeerURL: "http://127.0.0.1:8082", Config: "7d01e5c4", Drift: []string{"shop.example"}},
	})
	// Output:
	// Name    State  Load  In-flight  Address                Config    Drift         Draining
	// node-a  alive  0.25  16/64      http://127.0.0.1:8080  3f9c2a1b  -             no
	// node-b  alive  0.50  32/64      http://127.0.0.1:8081  3f9c2a1b  -             yes
	// node-c  dead   0.00  0/64       http://127.0.0.1:8082  7d01e5c4  shop.example  no
}
