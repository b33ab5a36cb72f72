package cluster

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/mproc/mproc/kde"
	"github.com/mproc/mproc/pool"
)

// The permissions the README lists for namespace ns, as a server sees
// them.
func clientPermissions(ns string) *server.Permissions {
	st, obj := "MPROC_"+ns, "OBJ_"+ns+"_segments"
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			ns + ".task.>", ns + ".cancel.*", ns + ".release",
			"$JS.API.INFO",
			"$JS.API.STREAM.CREATE." + st, "$JS.API.STREAM.UPDATE." + st, "$JS.API.STREAM.INFO." + st,
			"$JS.API.STREAM.MSG.DELETE." + st, "$JS.ACK." + st + ".nodes.>",
			"$JS.API.CONSUMER.CREATE." + st + ".>", "$JS.API.CONSUMER.INFO." + st + ".>",
			"$JS.API.STREAM.CREATE." + obj, "$JS.API.STREAM.UPDATE." + obj, "$JS.API.STREAM.INFO." + obj,
			"$JS.API.STREAM.PURGE." + obj, "$JS.API.STREAM.MSG.GET." + obj, "$JS.API.DIRECT.GET." + obj + ".>",
			"$O." + ns + "_segments.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			ns + ".res.>", ns + ".alive.*", ns + ".seg.*",
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + st + ".nodes",
			"_INBOX.>",
		}},
		Response: &server.ResponsePermission{MaxMsgs: 1},
	}
}

func nodePermissions(ns string) *server.Permissions {
	st, obj := "MPROC_"+ns, "OBJ_"+ns+"_segments"
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			ns + ".res.>", ns + ".alive.*", ns + ".seg.*",
			"$JS.API.INFO",
			"$JS.API.CONSUMER.INFO." + st + ".nodes", "$JS.API.CONSUMER.MSG.NEXT." + st + ".nodes",
			"$JS.ACK." + st + ".nodes.>",
			"$JS.API.STREAM.INFO." + obj, "$JS.API.CONSUMER.CREATE." + obj + ".>",
			"$JS.API.CONSUMER.DELETE." + obj + ".>",
			"$JS.API.STREAM.MSG.GET." + obj, "$JS.API.DIRECT.GET." + obj + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			ns + ".cancel.*", ns + ".release", "_INBOX.>",
		}},
	}
}

func withUser(raw, user string) string {
	u, _ := url.Parse(raw)
	u.User = url.UserPassword(user, "pw-"+user)
	return u.String()
}

func TestLeastPermissions(t *testing.T) {
	s, err := startServer("", 0, nil, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "client", Password: "pw-client", Permissions: clientPermissions("perm")},
			{Username: "node", Password: "pw-node", Permissions: nodePermissions("perm")},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mustNode(t, []string{withUser(s.URL(), "node")}, "perm", 1)
	violations := make(chan error, 16)
	p := mustConnect(t, &Config{URLs: []string{withUser(s.URL(), "client")}, Namespace: "perm", Workers: 2, Memory: true,
		Options: []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case violations <- err:
			default:
			}
		})}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := pool.Map(ctx, p, cube, ints(500))
	if err != nil || !slices.Equal(got, cubes(500)) {
		t.Fatalf("Map() with the README's permissions = %v, %v", head(got), err)
	}
	samples, _ := kde.NormalSamples(1000, []float64{0, 0}, []float64{1, 0, 0, 1}, 1)
	shared, err := kde.ShareSamples(samples)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if _, err := kde.SweepPool(ctx, p, shared, []float64{0, 0}, kde.Linspace(1, 1.2, 10), kde.Hypercube); err != nil {
		t.Fatalf("SweepPool() with the README's permissions = %v", err)
	}
	shared.Close()
	time.Sleep(500 * time.Millisecond) // the release: object deleted, nodes told
	select {
	case err := <-violations:
		t.Fatalf("the client was refused: %v", err)
	default:
	}
}
