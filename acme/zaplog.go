package acme

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger sends certmagic's zap logs to keter's slog at Debug: keter
// logs what an operator needs itself, from certmagic's events. Errors
// that no event carries (storage, locks) stay visible as warnings.
func zapLogger(log *slog.Logger) *zap.Logger {
	return zap.New(&zapCore{log: log.With("part", "certmagic")})
}

// Errors certmagic logs that onEvent already reports.
var reported = map[string]bool{
	"could not get certificate from issuer": true,
	"will retry":                            true,
	"final attempt; giving up":              true,
	"job failed":                            true,
	"final attempt; giving up until next scheduled renewal check finds the certificate still needs renewal": true,
	"challenge failed":         true, // acmez, before the order fails
	"validating authorization": true,
}

type zapCore struct {
	log    *slog.Logger
	fields []zapcore.Field
}

func (c *zapCore) Enabled(zapcore.Level) bool { return true }

func (c *zapCore) With(fs []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.log.Enabled(context.Background(), level(e)) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fs...) {
		f.AddTo(enc)
	}
	attrs := make([]any, 0, 2*len(enc.Fields)+2)
	if e.LoggerName != "" {
		attrs = append(attrs, "logger", e.LoggerName)
	}
	for k, v := range enc.Fields {
		attrs = append(attrs, k, v)
	}
	c.log.Log(context.Background(), level(e), e.Message, attrs...)
	return nil
}

func (c *zapCore) Sync() error { return nil }

func level(e zapcore.Entry) slog.Level {
	if e.Level >= zapcore.ErrorLevel && !reported[e.Message] {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}
