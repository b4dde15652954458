// Command client creates an insight through the generated Go stubs, reads it back by its short
// id, and decodes the rich error of a refused create (README "Stubs for other languages").
//
// It prints one JSON object per step, so tests/integration/test_stubs.py can check what a Go
// caller sees. The API key comes from INSIGHTS_API_KEY, not a flag, so it stays out of `ps`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	insightsv1 "example.com/insights/gen/go/insights/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "host:port of the insights server")
	environment := flag.Int64("environment", 1, "environment (project) id")
	name := flag.String("name", "From Go", "name of the insight to create")
	flag.Parse()
	if err := run(*target, *environment, *name, os.Getenv("INSIGHTS_API_KEY")); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

func run(target string, environment int64, name, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// grpc 1.33 (Debian's) predates the insecure credentials package; plaintext for local servers.
	conn, err := grpc.DialContext(ctx, target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		return fmt.Errorf("dial %s: %w", target, err)
	}
	defer conn.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	insights := insightsv1.NewInsightsServiceClient(conn)

	created, err := insights.CreateInsight(ctx, &insightsv1.CreateInsightRequest{
		EnvironmentId: environment,
		Insight:       &insightsv1.Insight{Name: proto.String(name)},
	})
	if err != nil {
		return fmt.Errorf("CreateInsight: %w", err)
	}
	emit(map[string]any{"step": "created", "id": created.GetId(), "short_id": created.GetShortId(), "name": created.GetName()})

	got, err := insights.GetInsight(ctx, &insightsv1.GetInsightRequest{
		EnvironmentId: environment,
		Lookup:        &insightsv1.GetInsightRequest_ShortId{ShortId: created.GetShortId()},
	})
	if err != nil {
		return fmt.Errorf("GetInsight: %w", err)
	}
	emit(map[string]any{"step": "got", "id": got.GetId(), "short_id": got.GetShortId(), "name": got.GetName()})

	// Names are at most 400 characters: the server refuses with details in grpc-status-details-bin.
	_, err = insights.CreateInsight(ctx, &insightsv1.CreateInsightRequest{
		EnvironmentId: environment,
		Insight:       &insightsv1.Insight{Name: proto.String(strings.Repeat("x", 401))},
	})
	if err == nil {
		return fmt.Errorf("CreateInsight with a 401-character name succeeded")
	}
	emit(refusal(err))
	return nil
}

// refusal decodes a failed call's google.rpc.Status: its code, field violations and ErrorInfo.
func refusal(err error) map[string]any {
	st := status.Convert(err)
	fields := []string{}
	out := map[string]any{"step": "refused", "code": st.Code().String(), "message": st.Message()}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		case *errdetails.ErrorInfo:
			out["domain"], out["reason"] = d.GetDomain(), d.GetReason()
		}
	}
	out["fields"] = fields
	return out
}

func emit(step map[string]any) {
	line, _ := json.Marshal(step)
	fmt.Println(string(line))
}
