package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/serviceradar/sync-operator/test/armisemu"
	"github.com/serviceradar/sync-operator/workers/integration/faker/population"
)

// armis serves the Armis emulator (test/armisemu) over plain HTTP until
// SIGINT or SIGTERM, as the second source of `DEMO_OVERLAP`: its inventory
// is observed now (so no device is stale), every hundredth pair of devices
// is a first-hop redundancy pair sharing a virtual MAC, and with an overlap
// percent that share of its devices are ones that a Faker source with the
// same overlap seed reports too.
func armis(args []string) error {
	fs := flag.NewFlagSet("armis", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:50080", "address to serve the Armis API on")
	devices := fs.Int("devices", 10000, "devices in the inventory (ids 1..N)")
	seed := fs.Uint64("seed", 5, "inventory seed")
	secret := fs.String("secret-key", "", "secret key the token endpoint accepts (required)")
	overlapSeed := fs.Uint64("overlap-seed", 42, "overlap seed shared with the Faker source (spec.faker.overlap.seed)")
	overlapPercent := fs.Int("overlap-percent", 0, "percent of devices shared with generators of the same overlap seed, 0..100")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("parsing flags: %w", err)
	}
	switch {
	case *secret == "":
		return errors.New("--secret-key is required")
	case *devices < 0 || *devices > armisemu.MaxDevices:
		return fmt.Errorf("--devices must be within 0..%d", armisemu.MaxDevices)
	case *overlapPercent < 0 || *overlapPercent > 100:
		return errors.New("--overlap-percent must be within 0..100")
	}
	emu := armisemu.New(armisemu.Options{Seed: *seed, Devices: *devices, SecretKey: *secret, Epoch: time.Now().UTC(),
		Overlap: population.Overlap{Seed: *overlapSeed, Percent: *overlapPercent}, RedundancyPairEvery: 100})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Printf("http://%s\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the Armis emulator: %w", err)
	}
	return nil
}
