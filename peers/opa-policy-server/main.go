// Command opa-policy-server is the policy server of wasmCloud's OPA example as its blog post
// describes it, rebuilt for Arbiter's interoperability tests and benchmark: one NATS subscription
// on the policy topic, OPA's rego package evaluating data.wasmcloud.access.allow over each request,
// and a reply {requestId, permitted}.
//
// Where the example does something surprising, this program does the same by default, so that
// what it measures is what an operator following wasmCloud's guidance runs:
//   - the reply carries a new random UUID as requestId, not the request's id;
//   - the reply has no message and nothing is recorded;
//   - a request that is not JSON (or that the policy cannot evaluate) stops the process
//     (-on-bad-input skip keeps it running and leaves the request unanswered).
//
// The example prepares the query again for every message; -prepare-each does that too, and by
// default the query is prepared once at start.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The example's policy.rego, verbatim from the wasmCloud 1.0 blog post. It is written in Rego v0
// syntax (rules without `if`), which OPA 1.x parses only when told to.
//
//go:embed policy.rego
var embeddedPolicy string

const query = "data.wasmcloud.access.allow"

// response is the example's reply; its fields are in the order Go's encoding of the example's
// map[string]interface{} puts them (sorted keys), so the bytes are the same.
type response struct {
	Permitted bool   `json:"permitted"`
	RequestID string `json:"requestId"`
}

type settings struct {
	url, user, password, topic, queue, policyFile, onBadInput string
	prepareEach, version                                      bool
}

func parseFlags() settings {
	var s settings
	flag.StringVar(&s.url, "nats", envOr("NATS_URL", nats.DefaultURL), "NATS server URL (env NATS_URL)")
	flag.StringVar(&s.user, "user", os.Getenv("NATS_USER"), "NATS user (env NATS_USER)")
	flag.StringVar(&s.password, "password", os.Getenv("NATS_PASSWORD"), "NATS password (env NATS_PASSWORD)")
	flag.StringVar(&s.topic, "topic", "wasmcloud.policy", "policy topic to subscribe to")
	flag.StringVar(&s.queue, "queue", "", "queue group, so that several servers share the requests (the example has none)")
	flag.StringVar(&s.policyFile, "policy", "", "Rego v0 policy file to use instead of the embedded example policy")
	flag.StringVar(&s.onBadInput, "on-bad-input", "exit", "exit (as the example does) or skip, for a request that cannot be evaluated")
	flag.BoolVar(&s.prepareEach, "prepare-each", false, "prepare the query for every request, as the example does")
	flag.BoolVar(&s.version, "version", false, "print the versions of OPA and nats.go this was built with, and exit")
	flag.Parse()
	return s
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func prepare(ctx context.Context, policy string) (rego.PreparedEvalQuery, error) {
	return rego.New(
		rego.Query(query),
		rego.Module("policy.rego", policy),
		rego.SetRegoVersion(ast.RegoV0),
	).PrepareForEval(ctx)
}

// decide evaluates the policy over one request; a request that is not a JSON object is an error.
func decide(ctx context.Context, prepared rego.PreparedEvalQuery, data []byte) (bool, error) {
	var input map[string]interface{}
	if err := json.Unmarshal(data, &input); err != nil {
		return false, fmt.Errorf("request is not a JSON object: %w", err)
	}
	results, err := prepared.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return false, fmt.Errorf("evaluating %s: %w", query, err)
	}
	return len(results) > 0 && len(results[0].Expressions) > 0 && results[0].Expressions[0].Value == true, nil
}

func moduleVersion(info *debug.BuildInfo, path string) string {
	for _, dep := range info.Deps {
		if dep.Path == path {
			return dep.Version
		}
	}
	return "unknown"
}

func main() {
	s := parseFlags()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if s.version {
		info, ok := debug.ReadBuildInfo()
		if !ok {
			log.Fatal("no build information in this binary")
		}
		fmt.Printf("opa-policy-server opa=%s nats.go=%s go=%s\n",
			moduleVersion(info, "github.com/open-policy-agent/opa"), moduleVersion(info, "github.com/nats-io/nats.go"), info.GoVersion)
		return
	}
	if s.onBadInput != "exit" && s.onBadInput != "skip" {
		log.Fatalf("-on-bad-input must be exit or skip, not %q", s.onBadInput)
	}
	policy := embeddedPolicy
	if s.policyFile != "" {
		bytes, err := os.ReadFile(s.policyFile)
		if err != nil {
			log.Fatalf("reading -policy: %s", err)
		}
		policy = string(bytes)
	}

	ctx := context.Background()
	prepared, err := prepare(ctx, policy)
	if err != nil {
		log.Fatalf("preparing %s: %s", query, err)
	}

	options := []nats.Option{nats.Name("opa-policy-server"), nats.MaxReconnects(-1)}
	if s.user != "" {
		options = append(options, nats.UserInfo(s.user, s.password))
	}
	nc, err := nats.Connect(s.url, options...)
	if err != nil {
		log.Fatalf("connecting to %s: %s", s.url, err)
	}

	failed := make(chan error, 1)
	handle := func(m *nats.Msg) {
		current := prepared
		if s.prepareEach {
			var err error
			if current, err = prepare(ctx, policy); err != nil {
				failed <- fmt.Errorf("preparing %s: %w", query, err)
				return
			}
		}
		permitted, err := decide(ctx, current, m.Data)
		if err != nil {
			if s.onBadInput == "exit" {
				select {
				case failed <- err:
				default:
				}
				return
			}
			log.Printf("request on %s left unanswered: %s", m.Subject, err)
			return
		}
		reply, err := json.Marshal(response{Permitted: permitted, RequestID: uuid.New().String()})
		if err == nil {
			err = m.Respond(reply)
		}
		if err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
			log.Printf("replying on %s: %s", m.Reply, err)
		}
	}
	if s.queue != "" {
		_, err = nc.QueueSubscribe(s.topic, s.queue, handle)
	} else {
		_, err = nc.Subscribe(s.topic, handle)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		log.Fatalf("subscribing to %s: %s", s.topic, err)
	}
	// The example prints this line once it is subscribed; tests wait for it.
	fmt.Println("Listening for policy requests...")

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-signals:
		if err := nc.Drain(); err != nil {
			log.Printf("draining: %s", err)
		}
	case err := <-failed:
		nc.Close()
		log.Fatalf("stopping on a request it cannot evaluate: %s", err)
	}
}
