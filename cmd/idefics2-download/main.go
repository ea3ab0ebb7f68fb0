// Command idefics2-download fetches model and dataset snapshots from the Hugging Face hub, for
// copying to machines without the internet. See hub.Main for the usage.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/idefics2/idefics2/hub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(hub.Main(ctx, hub.NewClient(), os.Args[1:], os.Stdout, os.Stderr))
}
