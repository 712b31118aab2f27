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
		"tenant_id=8 string", "tenant_slug=9 string", "config_source=10 string", "version=11 string",
		"hostname=12 string", "os=13 string", "arch=14 string",
	},
	"GatewayStatusChunk": {
		"repeated services=1 monitoring.GatewayServiceStatus", "gateway_id=2 string", "agent_id=3 string",
		"timestamp=4 int64", "partition=5 string", "source_ip=6 string", "is_final=7 bool",
		"chunk_index=8 int32", "total_chunks=9 int32", "kv_store_id=10 string", "tenant_id=11 string",
		"tenant_slug=12 string", "config_source=13 string", "version=14 string", "hostname=15 string",
		"os=16 string", "arch=17 string",
	},
	"GatewayServiceStatus": {
		"service_name=1 string", "available=2 bool", "message=3 bytes", "service_type=4 string",
		"response_time=5 int64", "agent_id=6 string", "gateway_id=7 string", "partition=8 string",
		"source=9 string", "kv_store_id=10 string", "tenant_id=11 string", "tenant_slug=12 string",
	},
	"GatewayStatusResponse": {"received=1 bool"},
	"ControlStreamRequest": {
		"hello=1 monitoring.ControlStreamHello oneof:payload", "command_ack=2 monitoring.CommandAck oneof:payload",
		"command_progress=3 monitoring.CommandProgress oneof:payload",
		"command_result=4 monitoring.CommandResult oneof:payload", "config_ack=5 monitoring.ConfigAck oneof:payload",
		"certificate_request=100 monitoring.CertificateSigningRequest oneof:payload",
	},
	"ControlStreamHello": {
		"agent_id=1 string", "partition=2 string", "repeated capabilities=3 string", "config_version=4 string",
		"version=5 string", "hostname=6 string", "os=7 string", "arch=8 string",
		"map labels=9 string:string", "config_source=10 string",
	},
	"ConfigAck": {"config_version=1 string", "timestamp=2 int64"},
	"ControlStreamResponse": {
		"command=1 monitoring.CommandRequest oneof:payload", "config=2 monitoring.AgentConfigResponse oneof:payload",
		"certificate_renewal=100 monitoring.CertificateRenewal oneof:payload",
	},
	"CommandRequest": {
		"command_id=1 string", "command_type=2 string", "payload_json=3 bytes", "ttl_seconds=4 int64",
		"created_at=5 int64",
	},
	"CommandAck": {"command_id=1 string", "command_type=2 string", "timestamp=3 int64", "message=4 string"},
	"CommandProgress": {
		"command_id=1 string", "command_type=2 string", "progress_percent=3 int32", "message=4 string",
		"timestamp=5 int64", "payload_json=6 bytes",
	},
	"CommandResult": {
		"command_id=1 string", "command_type=2 string", "success=3 bool", "message=4 string",
		"payload_json=5 bytes", "timestamp=6 int64",
	},
	// Edge certificate self-renewal (this project's own, numbers from 100 in the oneofs).
	"CertificateSigningRequest": {"csr_pem=1 bytes", "proof=2 bytes", "timestamp=3 int64"},
	"CertificateRenewal": {
		"request_id=1 string", "issued=2 bool", "certificate_pem=3 bytes", "reason=4 string", "message=5 string",
	},
}

// upstreamOnly marks a field of upstream's monitoring.proto whose message type
// this file does not declare: the number must stay reserved here.
const upstreamOnly = "upstream-only"

// upstream is ServiceRadar's monitoring.proto (../shared/UPSTREAM.md) as
// number -> cardinality and type, message by message. Every number listed here
// must either carry exactly this type in our file or be reserved in it, so an
// upstream client and this gateway never read one field as two types. Numbers
// upstream reserves (the tenant fields) are free for us and are absent here.
// AgentConfigResponse 10 is unused upstream today (it was a DuskConfig in
// builds of 2026-01-19..24, never released as a sweep-capable agent) and is
// our SweepConfig; it is deliberately absent.
var upstream = map[string]map[protoreflect.FieldNumber]string{
	"AgentHelloRequest": {
		1: "string", 2: "string", 3: "repeated string", 4: "string", 5: "string", 6: "string", 7: "string",
		8: "string", 9: "map string:string", 10: "string",
	},
	"AgentHelloResponse": {1: "bool", 2: "string", 3: "string", 4: "string", 5: "int64", 6: "int32", 7: "bool"},
	"AgentConfigRequest": {1: "string", 2: "string"},
	"AgentConfigResponse": {
		1: "bool", 2: "string", 3: "int64", 4: "int32", 5: "int32", 6: upstreamOnly, 7: "bytes",
		8: upstreamOnly, 9: upstreamOnly, 11: upstreamOnly,
	},
	"GatewayStatusRequest": {
		1: "repeated monitoring.GatewayServiceStatus", 2: "string", 3: "string", 4: "int64", 5: "string",
		6: "string", 7: "string", 10: "string", 11: "string", 12: "string", 13: "string", 14: "string",
	},
	"GatewayStatusChunk": {
		1: "repeated monitoring.GatewayServiceStatus", 2: "string", 3: "string", 4: "int64", 5: "string",
		6: "string", 7: "bool", 8: "int32", 9: "int32", 10: "string", 13: "string", 14: "string",
		15: "string", 16: "string", 17: "string",
	},
	"GatewayServiceStatus": {
		1: "string", 2: "bool", 3: "bytes", 4: "string", 5: "int64", 6: "string", 7: "string", 8: "string",
		9: "string", 10: "string",
	},
	"GatewayStatusResponse": {1: "bool"},
	"ControlStreamRequest": {
		1: "monitoring.ControlStreamHello oneof:payload", 2: "monitoring.CommandAck oneof:payload",
		3: "monitoring.CommandProgress oneof:payload", 4: "monitoring.CommandResult oneof:payload",
		5: "monitoring.ConfigAck oneof:payload",
	},
	"ControlStreamHello": {
		1: "string", 2: "string", 3: "repeated string", 4: "string", 5: "string", 6: "string", 7: "string",
		8: "string", 9: "map string:string", 10: "string",
	},
	"ConfigAck": {1: "string", 2: "int64"},
	"ControlStreamResponse": {
		1: "monitoring.CommandRequest oneof:payload", 2: "monitoring.AgentConfigResponse oneof:payload",
	},
	"CommandRequest":  {1: "string", 2: "string", 3: "bytes", 4: "int64", 5: "int64"},
	"CommandAck":      {1: "string", 2: "string", 3: "int64", 4: "string"},
	"CommandProgress": {1: "string", 2: "string", 3: "int32", 4: "string", 5: "int64", 6: "bytes"},
	"CommandResult":   {1: "string", 2: "string", 3: "bool", 4: "string", 5: "bytes", 6: "int64"},
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

// typeOf is describe without the field's name and number: cardinality, type
// and oneof, the parts a peer's decoder depends on.
func typeOf(fd protoreflect.FieldDescriptor) string {
	d := string(describe(fd))
	prefix := ""
	for _, p := range []string{"map ", "repeated "} {
		if strings.HasPrefix(d, p) {
			prefix, d = p, strings.TrimPrefix(d, p)
		}
	}
	_, rest, _ := strings.Cut(d, " ")
	return prefix + rest
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

func TestWireContractSharedWithUpstream(t *testing.T) {
	// Every number upstream uses keeps upstream's type here; numbers upstream
	// uses for things this gateway does not carry stay reserved so nobody
	// reuses them with another meaning.
	for msg, nums := range upstream {
		t.Run(msg, func(t *testing.T) {
			md := pb.File_monitoring_proto.Messages().ByName(protoreflect.Name(msg))
			if md == nil {
				t.Fatalf("message %s, which upstream clients send or read, is missing", msg)
			}
			for n, want := range nums {
				fd := md.Fields().ByNumber(n)
				switch {
				case want == upstreamOnly && fd != nil:
					t.Errorf("%s: field %d is upstream's own type and must stay reserved, got %s", msg, n, describe(fd))
				case want == upstreamOnly && !md.ReservedRanges().Has(n):
					t.Errorf("%s: field number %d must stay reserved", msg, n)
				case want == upstreamOnly:
				case fd == nil:
					t.Errorf("%s: field %d (%s upstream) is missing", msg, n, want)
				case typeOf(fd) != want:
					t.Errorf("%s: field %d is %s here but %s upstream", msg, n, typeOf(fd), want)
				}
			}
		})
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
