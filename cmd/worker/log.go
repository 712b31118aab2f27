package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logOptions are the worker's logging flags: the --zap-* flags of
// controller-runtime, which the manager and the gateway take too, with the
// same defaults (JSON at info level with RFC 3339 times, stack traces from
// error; --zap-devel: console at debug level, stack traces from warn).
type logOptions struct {
	development bool
	encoder     string // "json", "console" or "" (the mode's default)
	level       *zapcore.Level
	stacktrace  *zapcore.Level
	time        zapcore.TimeEncoder
}

// timeEncoders are the --zap-time-encoding values.
var timeEncoders = map[string]zapcore.TimeEncoder{
	"rfc3339nano": zapcore.RFC3339NanoTimeEncoder,
	"rfc3339":     zapcore.RFC3339TimeEncoder,
	"iso8601":     zapcore.ISO8601TimeEncoder,
	"millis":      zapcore.EpochMillisTimeEncoder,
	"nanos":       zapcore.EpochNanosTimeEncoder,
	"epoch":       zapcore.EpochTimeEncoder,
}

// bindFlags adds the --zap-* flags to fs.
func (o *logOptions) bindFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.development, "zap-devel", false,
		"Development Mode defaults(encoder=consoleEncoder,logLevel=Debug,stackTraceLevel=Warn). "+
			"Production Mode defaults(encoder=jsonEncoder,logLevel=Info,stackTraceLevel=Error)")
	fs.Func("zap-encoder", "Zap log encoding (one of 'json' or 'console')", func(v string) error {
		if v = strings.ToLower(v); v != "json" && v != "console" {
			return fmt.Errorf("invalid encoder value %q", v)
		}
		o.encoder = v
		return nil
	})
	fs.Func("zap-log-level", "Zap Level to configure the verbosity of logging. Can be one of 'debug', 'info', 'error', 'panic'"+
		" or any integer value > 0 which corresponds to custom debug levels of increasing verbosity", func(v string) error {
		if n, err := strconv.Atoi(v); err == nil {
			if n <= 0 || n > 127 {
				return fmt.Errorf("invalid log level %q", v)
			}
			l := zapcore.Level(-n)
			o.level = &l
			return nil
		}
		l, err := zapcore.ParseLevel(v)
		if err != nil {
			return fmt.Errorf("invalid log level %q", v)
		}
		o.level = &l
		return nil
	})
	fs.Func("zap-stacktrace-level", "Zap Level at and above which stacktraces are captured (one of 'info', 'error', 'panic').", func(v string) error {
		l, err := zapcore.ParseLevel(v)
		if err != nil {
			return fmt.Errorf("invalid stacktrace level %q", v)
		}
		o.stacktrace = &l
		return nil
	})
	fs.Func("zap-time-encoding", "Zap time encoding (one of 'epoch', 'millis', 'nano', 'iso8601', 'rfc3339' or 'rfc3339nano'). Defaults to 'rfc3339'.", func(v string) error {
		enc, ok := timeEncoders[strings.ToLower(v)]
		if !ok {
			return fmt.Errorf("invalid time-encoding value %q", v)
		}
		o.time = enc
		return nil
	})
}

// logger is the logger the flags describe, writing to w.
func (o *logOptions) logger(w io.Writer) logr.Logger {
	level, stacktrace := zapcore.InfoLevel, zapcore.ErrorLevel
	cfg, encoder := zap.NewProductionEncoderConfig(), o.encoder
	var opts []zap.Option
	if o.development {
		level, stacktrace = zapcore.DebugLevel, zapcore.WarnLevel
		cfg = zap.NewDevelopmentEncoderConfig()
		opts = append(opts, zap.Development())
		if encoder == "" {
			encoder = "console"
		}
	}
	if o.level != nil {
		level = *o.level
	}
	if o.stacktrace != nil {
		stacktrace = *o.stacktrace
	}
	cfg.EncodeTime = zapcore.RFC3339TimeEncoder
	if o.time != nil {
		cfg.EncodeTime = o.time
	}
	enc := zapcore.NewJSONEncoder(cfg)
	if encoder == "console" {
		enc = zapcore.NewConsoleEncoder(cfg)
	}
	sink := zapcore.AddSync(w)
	core := zapcore.NewCore(enc, sink, level)
	if !o.development && level > zapcore.Level(-2) {
		// As controller-runtime: the first 100 equal messages of a second,
		// then every 100th, except at high verbosity.
		core = zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)
	}
	opts = append(opts, zap.ErrorOutput(sink), zap.AddStacktrace(stacktrace))
	return zapr.NewLogger(zap.New(core, opts...))
}
