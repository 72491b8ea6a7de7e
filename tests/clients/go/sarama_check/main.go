// sarama (Debian's golang-github-shopify-sarama-dev) against a running broker:
// `go run . BOOTSTRAP SCENARIO`. Prints one JSON line with what it saw.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

type record struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Value     string `json:"value"`
}

func produce(brokers []string, topic string, n int, codec sarama.CompressionCodec) []record {
	c := config()
	c.Producer.Compression = codec
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		fail(err)
	}
	defer p.Close()
	var out []record
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("v%d", i)
		part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%7)), Value: sarama.StringEncoder(v)})
		if err != nil {
			fail(err)
		}
		out = append(out, record{part, off, v})
	}
	return out
}

func readAll(brokers []string, topic string, want int) []record {
	c, err := sarama.NewConsumer(brokers, config())
	if err != nil {
		fail(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		fail(err)
	}
	var mu sync.Mutex
	var out []record
	var wg sync.WaitGroup
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			fail(err)
		}
		wg.Add(1)
		go func(pc sarama.PartitionConsumer) {
			defer wg.Done()
			defer pc.Close()
			for time.Now().Before(deadline) {
				select {
				case m := <-pc.Messages():
					mu.Lock()
					out = append(out, record{m.Partition, m.Offset, string(m.Value)})
					done := len(out) >= want
					mu.Unlock()
					if done {
						return
					}
				case <-time.After(200 * time.Millisecond):
					mu.Lock()
					done := len(out) >= want
					mu.Unlock()
					if done {
						return
					}
				}
			}
		}(pc)
	}
	wg.Wait()
	return out
}

type handler struct {
	mu   *sync.Mutex
	seen *[]record
}

func (handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		*h.seen = append(*h.seen, record{m.Partition, m.Offset, string(m.Value)})
		h.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

func group(brokers []string, topic string, want int) ([]record, int64) {
	c := config()
	c.Consumer.Offsets.CommitInterval = 200 * time.Millisecond
	g, err := sarama.NewConsumerGroup(brokers, "sarama-group", c)
	if err != nil {
		fail(err)
	}
	var mu sync.Mutex
	var seen []record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, handler{&mu, &seen}); err != nil && ctx.Err() == nil {
				fail(err)
			}
		}
	}()
	for ctx.Err() == nil {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // one more auto-commit
	cancel()
	g.Close()
	// What the group committed, summed over the partitions.
	client, err := sarama.NewClient(brokers, config())
	if err != nil {
		fail(err)
	}
	defer client.Close()
	om, err := sarama.NewOffsetManagerFromClient("sarama-group", client)
	if err != nil {
		fail(err)
	}
	defer om.Close()
	parts, _ := client.Partitions(topic)
	var committed int64
	for _, p := range parts {
		pom, err := om.ManagePartition(topic, p)
		if err != nil {
			fail(err)
		}
		off, _ := pom.NextOffset()
		if off > 0 {
			committed += off
		}
		pom.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	return seen, committed
}

func main() {
	if os.Getenv("SARAMA_LOG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.LstdFlags)
	}
	brokers := []string{os.Args[1]}
	out := map[string]interface{}{}
	switch os.Args[2] {
	case "plain":
		out["acked"] = produce(brokers, "sarama-plain", 300, sarama.CompressionNone)
		out["gzip"] = produce(brokers, "sarama-gzip", 100, sarama.CompressionGZIP)
		out["got"] = readAll(brokers, "sarama-plain", 300)
		out["got_gzip"] = readAll(brokers, "sarama-gzip", 100)
	case "group":
		produce(brokers, "sarama-group", 200, sarama.CompressionNone)
		seen, committed := group(brokers, "sarama-group", 200)
		out["seen"] = seen
		out["committed"] = committed
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
