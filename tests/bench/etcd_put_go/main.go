// etcd_put_go — closed-loop put load against etcd over gRPC (clientv3),
// the native-client reference for tests/bench/propose_bench.sh.
//
//	etcd_put_go ENDPOINT COUNT CONCURRENCY SIZE
//
// CONCURRENCY goroutines, each with its own client (own connection), put
// 128-byte values one after the other until COUNT puts completed. Prints
// one line in the format of `sandfs bench-propose`. Built by the benchmark
// with GOPATH=/usr/share/gocode GO111MODULE=off (Debian's packaged
// sources: golang-etcd-server-dev).
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: etcd_put_go ENDPOINT COUNT CONCURRENCY SIZE")
		os.Exit(2)
	}
	ep := os.Args[1]
	count, err1 := strconv.Atoi(os.Args[2])
	conc, err2 := strconv.Atoi(os.Args[3])
	size, err3 := strconv.Atoi(os.Args[4])
	if err1 != nil || err2 != nil || err3 != nil || count < 1 || conc < 1 || size < 0 {
		fmt.Fprintln(os.Stderr, "etcd_put_go: bad arguments")
		os.Exit(2)
	}
	if conc > count {
		conc = count
	}
	clients := make([]*clientv3.Client, conc)
	for i := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcd_put_go: connect:", err)
			os.Exit(1)
		}
		clients[i] = c
	}
	val := make([]byte, size)
	for i := range val {
		val[i] = 'v'
	}
	value := string(val)
	lat := make([]time.Duration, count)
	var next, failed int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := clients[w]
			for {
				i := atomic.AddInt64(&next, 1) - 1
				if i >= int64(count) {
					return
				}
				s := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Put(ctx, fmt.Sprintf("bench/%d/%d", w, i), value)
				cancel()
				lat[i] = time.Since(s)
				if err != nil {
					atomic.AddInt64(&failed, 1)
				}
			}
		}(w)
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	fmt.Printf("ok count=%d failed=%d concurrency=%d size=%d secs=%.3f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f\n",
		count, failed, conc, size, secs, float64(count)/secs,
		float64(lat[count/2].Nanoseconds())/1e3, float64(lat[count*99/100].Nanoseconds())/1e3)
	for _, c := range clients {
		c.Close()
	}
	if failed > 0 {
		os.Exit(1)
	}
}
