package proto_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/serviceradar/sync-operator/proto"
)

// field is one field of the fixed wire contract: "name=number kind", with a
// "repeated " or "map " prefix where the cardinality is not singular.
type field string

// contract is DESIGN.md section 6: the upstream field numbers and types that
// existing agents depend on. Changing this table changes the wire protocol.
var contract = map[string][]field{
	"AgentHelloRequest": {
		"agent_id=1 string", "version=2 string", "repeated capabilities=3 string", "hostname=4 string",
		"os=5 string", "arch=6 string", "partition=7 string", "config_version=8 string",
		"map labels=9 string:string", "config_source=10 string",
	},
	"AgentHelloResponse": {
		"accepted=1 bool", "agent_id=2 string", "message=3 string", "gateway_id=4 string",
		"server_time=5 int64", "heartbeat_interval_sec=6 int32", "config_outdated=7 bool",
		"tenant_id=8 string", "tenant_slug=9 string",
	},
	"AgentConfigRequest": {"agent_id=1 string", "config_version=2 string"},
	"AgentConfigResponse": {
		"not_modified=1 bool", "config_version=2 string", "config_timestamp=3 int64",
		"heartbeat_interval_sec=4 int32", "config_poll_interval_sec=5 int32", "config_json=7 bytes",
		"sweep=10 monitoring.SweepConfig",
	},
	"SweepConfig": {
		"repeated networks=1 string", "repeated device_targets=2 monitoring.DeviceTarget",
		"repeated sweep_modes=3 string", "sweep_interval_sec=4 int32",
	},
	"DeviceTarget": {"ip=1 string", "repeated ports=2 int32", "hostname=3 string"},
	"GatewayStatusRequest": {
		"repeated services=1 monitoring.GatewayServiceStatus", "gateway_id=2 string", "agent_id=3 string",
		"timestamp=4 int64", "partition=5 string", "source_ip=6 string", "kv_store_id=7 string",
		"tenant_id=8 string", "tenant_slug=9 string",
	},
	"GatewayStatusChunk": {
		"repeated services=1 monitoring.GatewayServiceStatus", "gateway_id=2 string", "agent_id=3 string",
		"timestamp=4 int64", "partition=5 string", "source_ip=6 string", "is_final=7 bool",
		"chunk_index=8 int32", "total_chunks=9 int32", "kv_store_id=10 string", "tenant_id=11 string",
		"tenant_slug=12 string",
	},
	"GatewayServiceStatus": {
		"service_name=1 string", "available=2 bool", "message=3 bytes", "service_type=4 string",
		"response_time=5 int64", "agent_id=6 string", "gateway_id=7 string", "partition=8 string",
		"source=9 string", "kv_store_id=10 string", "tenant_id=11 string", "tenant_slug=12 string",
	},
	"GatewayStatusResponse": {"received=1 bool"},
	"ControlStreamRequest": {
		"hello=1 monitoring.ControlStreamHello oneof:payload", "config_ack=5 monitoring.ConfigAck oneof:payload",
	},
	"ControlStreamHello": {
		"agent_id=1 string", "partition=2 string", "repeated capabilities=3 string", "config_version=4 string",
		"version=5 string", "hostname=6 string", "os=7 string", "arch=8 string",
		"map labels=9 string:string", "config_source=10 string",
	},
	"ConfigAck":             {"config_version=1 string", "timestamp=2 int64"},
	"ControlStreamResponse": {"config=2 monitoring.AgentConfigResponse oneof:payload"},
}

// rpcs is the service of DESIGN.md section 6: "Name(Input) Output" with
// "stream " before a streamed side.
var rpcs = []string{
	"Hello(monitoring.AgentHelloRequest) monitoring.AgentHelloResponse",
	"GetConfig(monitoring.AgentConfigRequest) monitoring.AgentConfigResponse",
	"PushStatus(monitoring.GatewayStatusRequest) monitoring.GatewayStatusResponse",
	"StreamStatus(stream monitoring.GatewayStatusChunk) monitoring.GatewayStatusResponse",
	"ControlStream(stream monitoring.ControlStreamRequest) stream monitoring.ControlStreamResponse",
}

func kindOf(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	default:
		return fd.Kind().String()
	}
}

func describe(fd protoreflect.FieldDescriptor) field {
	var b strings.Builder
	switch {
	case fd.IsMap():
		b.WriteString("map ")
	case fd.IsList():
		b.WriteString("repeated ")
	}
	fmt.Fprintf(&b, "%s=%d ", fd.Name(), fd.Number())
	if fd.IsMap() {
		fmt.Fprintf(&b, "%s:%s", kindOf(fd.MapKey()), kindOf(fd.MapValue()))
	} else {
		b.WriteString(kindOf(fd))
	}
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		fmt.Fprintf(&b, " oneof:%s", od.Name())
	}
	return field(b.String())
}

func TestWireContractMessages(t *testing.T) {
	file := pb.File_monitoring_proto
	if got := file.Package(); got != "monitoring" {
		t.Fatalf("proto package = %q, want %q", got, "monitoring")
	}
	if got, want := file.Messages().Len(), len(contract); got != want {
		t.Errorf("file declares %d top-level messages, contract has %d", got, want)
	}
	for name, want := range contract {
		t.Run(name, func(t *testing.T) {
			md := file.Messages().ByName(protoreflect.Name(name))
			if md == nil {
				t.Fatalf("message %s is missing", name)
			}
			var got []field
			for i := range md.Fields().Len() {
				got = append(got, describe(md.Fields().Get(i)))
			}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			sorted := append([]field(nil), want...)
			sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
			if strings.Join(asStrings(got), "\n") != strings.Join(asStrings(sorted), "\n") {
				t.Errorf("message %s drifted from the wire contract\n got: %v\nwant: %v", name, got, sorted)
			}
		})
	}
}

func TestWireContractReservedNumbers(t *testing.T) {
	// Numbers that upstream uses for things this gateway does not carry must
	// stay reserved so nobody reuses them with another meaning.
	for msg, nums := range map[string][]protoreflect.FieldNumber{
		"AgentConfigResponse":   {6},
		"ControlStreamResponse": {1},
	} {
		md := pb.File_monitoring_proto.Messages().ByName(protoreflect.Name(msg))
		for _, n := range nums {
			if !md.ReservedRanges().Has(n) {
				t.Errorf("%s: field number %d must stay reserved", msg, n)
			}
		}
	}
}

func TestWireContractService(t *testing.T) {
	sd := pb.File_monitoring_proto.Services().ByName("AgentGatewayService")
	if sd == nil {
		t.Fatal("service monitoring.AgentGatewayService is missing")
	}
	var got []string
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		in, out := string(m.Input().FullName()), string(m.Output().FullName())
		if m.IsStreamingClient() {
			in = "stream " + in
		}
		if m.IsStreamingServer() {
			out = "stream " + out
		}
		got = append(got, fmt.Sprintf("%s(%s) %s", m.Name(), in, out))
	}
	if strings.Join(got, "\n") != strings.Join(rpcs, "\n") {
		t.Errorf("service drifted from the wire contract\n got: %q\nwant: %q", got, rpcs)
	}
	if got := pb.AgentGatewayService_ServiceDesc.ServiceName; got != "monitoring.AgentGatewayService" {
		t.Errorf("gRPC service name = %q", got)
	}
}

func asStrings(fs []field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}
