package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger routes memberlist's "[LEVEL] memberlist: text"
// lines through slog at the matching level.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&mlWriter{log: l.With("component", "memberlist")}, "", 0)
}

type mlWriter struct{ log *slog.Logger }

func (w *mlWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG":
				level = slog.LevelDebug
			case "WARN":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}
