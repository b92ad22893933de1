// Package logging builds Patrol's zerolog logger and the zap logger that the
// etcd client and embedded server log through, so that every line Patrol
// prints comes out in one format.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Format names how log lines are written.
type Format string

const (
	// FormatJSON writes one JSON object per line (the default off a terminal).
	FormatJSON Format = "json"
	// FormatConsole writes human-readable lines (the default on a terminal).
	FormatConsole Format = "console"
)

// Config selects the level and format of a logger.
type Config struct {
	// Level is a zerolog level name: trace, debug, info, warn, error. Default info.
	Level string
	// Format is json or console. Empty picks console when Out is a terminal,
	// json otherwise.
	Format Format
	// Out is where lines go. Default os.Stderr.
	Out io.Writer
}

// New returns a zerolog logger for cfg, or an error naming the bad value.
func New(cfg Config) (zerolog.Logger, error) {
	out := cfg.Out
	if out == nil {
		out = os.Stderr
	}
	lvl := zerolog.InfoLevel
	if cfg.Level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(cfg.Level))
		if err != nil || l == zerolog.NoLevel {
			return zerolog.Nop(), fmt.Errorf("invalid log level %q: use one of trace, debug, info, warn, error", cfg.Level)
		}
		lvl = l
	}
	format := cfg.Format
	if format == "" {
		format = FormatJSON
		if f, ok := out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = FormatConsole
		}
	}
	switch format {
	case FormatJSON:
	case FormatConsole:
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("invalid log format %q: use json or console", cfg.Format)
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

// Zap returns a zap logger that forwards entries at min and above into l.
// The etcd client and server log through zap; routing them here keeps their
// chatter out of stderr (they log at info under normal load) while warnings
// still reach the operator in Patrol's format.
func Zap(l zerolog.Logger, min zapcore.Level) *zap.Logger {
	return zap.New(&zapCore{log: l, min: min})
}

// zapCore is a zapcore.Core writing into a zerolog logger.
type zapCore struct {
	log    zerolog.Logger
	min    zapcore.Level
	fields []zapcore.Field
}

func (c *zapCore) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log, min: c.min, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	var ev *zerolog.Event
	switch {
	case e.Level >= zapcore.ErrorLevel:
		ev = c.log.Error()
	case e.Level == zapcore.WarnLevel:
		ev = c.log.Warn()
	case e.Level == zapcore.InfoLevel:
		ev = c.log.Info()
	default:
		ev = c.log.Debug()
	}
	if ev == nil {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	// A call cancelled by its caller (a stopping process, a step-down) is
	// not worth a warning: the caller knows.
	if e.Level == zapcore.WarnLevel {
		if msg, ok := enc.Fields["error"].(string); ok && strings.Contains(msg, "code = Canceled") {
			ev = c.log.Debug()
			if ev == nil {
				return nil
			}
		}
	}
	if e.LoggerName != "" {
		ev = ev.Str("component", e.LoggerName)
	}
	ev.Fields(enc.Fields).Msg(e.Message)
	return nil
}

func (c *zapCore) Sync() error { return nil }
