package nginx

import (
	"fmt"
	"strings"
)

// directive is one parsed nginx directive; the tests parse what Render
// wrote with nginx's own tokenizing rules, so a smuggled `;`, `{` or `#`
// shows up as an extra directive, block or comment.
type directive struct {
	name  string
	args  []string
	block []directive
	isBlk bool
}

type tokenKind int

const (
	tWord tokenKind = iota
	tSemi
	tOpen
	tClose
)

type token struct {
	kind tokenKind
	text string
}

// tokenize follows ngx_conf_read_token: whitespace separates, quotes group
// with backslash escapes, # starts a comment outside quotes. It returns
// the comments separately.
func tokenize(src string) ([]token, []string, error) {
	var toks []token
	var comments []string
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				end = len(src) - i
			}
			comments = append(comments, src[i:i+end])
			i += end
		case c == ';':
			toks = append(toks, token{tSemi, ";"})
			i++
		case c == '{':
			toks = append(toks, token{tOpen, "{"})
			i++
		case c == '}':
			toks = append(toks, token{tClose, "}"})
			i++
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != c; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, nil, fmt.Errorf("unterminated quote at %d", i)
			}
			toks = append(toks, token{tWord, b.String()})
			i = j + 1
			if i < len(src) && !strings.ContainsRune(" \t\r\n;{}", rune(src[i])) {
				return nil, nil, fmt.Errorf("unexpected %q after quoted string at %d", src[i], i)
			}
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}\"'", rune(src[j])) {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				j++
			}
			toks = append(toks, token{tWord, src[i:j]})
			i = j
		}
	}
	return toks, comments, nil
}

func parseConf(src string) ([]directive, []string, error) {
	toks, comments, err := tokenize(src)
	if err != nil {
		return nil, nil, err
	}
	pos := 0
	var parse func(depth int) ([]directive, error)
	parse = func(depth int) ([]directive, error) {
		var out []directive
		var cur []string
		for pos < len(toks) {
			t := toks[pos]
			pos++
			switch t.kind {
			case tWord:
				cur = append(cur, t.text)
			case tSemi:
				if len(cur) == 0 {
					return nil, fmt.Errorf("empty directive")
				}
				out = append(out, directive{name: cur[0], args: cur[1:]})
				cur = nil
			case tOpen:
				if len(cur) == 0 {
					return nil, fmt.Errorf("block without a name")
				}
				body, err := parse(depth + 1)
				if err != nil {
					return nil, err
				}
				out = append(out, directive{name: cur[0], args: cur[1:], block: body, isBlk: true})
				cur = nil
			case tClose:
				if depth == 0 {
					return nil, fmt.Errorf("unbalanced }")
				}
				if len(cur) > 0 {
					return nil, fmt.Errorf("directive %q without ;", cur[0])
				}
				return out, nil
			}
		}
		if depth != 0 {
			return nil, fmt.Errorf("unclosed block")
		}
		if len(cur) > 0 {
			return nil, fmt.Errorf("trailing %q", cur)
		}
		return out, nil
	}
	ds, err := parse(0)
	return ds, comments, err
}

// allowed lists, per block, the directives Render may write.
var allowed = map[string]map[string]bool{
	"main":   set("user", "worker_processes", "worker_rlimit_nofile", "daemon", "pid", "error_log", "events", "http"),
	"events": set("worker_connections"),
	"http": set("include", "default_type", "sendfile", "tcp_nopush", "server_tokens", "access_log",
		"keepalive_timeout", "keepalive_requests", "server_names_hash_bucket_size", "server_names_hash_max_size",
		"map", "upstream", "server", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
		"uwsgi_temp_path", "scgi_temp_path", "limit_req_zone", "geo", "split_clients", "log_format"),
	"upstream": set("server", "keepalive", "keepalive_time", "keepalive_timeout", "least_conn"),
	"server": set("listen", "server_name", "ssl_certificate", "ssl_certificate_key", "ssl_protocols",
		"ssl_ciphers", "ssl_prefer_server_ciphers", "ssl_session_cache", "ssl_session_timeout",
		"ssl_session_tickets", "client_max_body_size", "set_real_ip_from", "real_ip_header",
		"real_ip_recursive", "location", "error_page", "http2", "keepalive_timeout",
		"gzip", "gzip_comp_level", "gzip_min_length", "gzip_proxied", "gzip_vary", "gzip_types"),
	"location": set("internal", "types", "default_type", "alias", "return", "proxy_pass", "proxy_http_version",
		"proxy_set_header", "proxy_read_timeout", "proxy_send_timeout", "proxy_ssl_server_name", "proxy_ssl_name",
		"proxy_hide_header", "add_header", "root", "autoindex", "try_files", "if", "set", "access_log", "open_file_cache", "open_file_cache_valid", "open_file_cache_errors",
		"client_max_body_size", "proxy_connect_timeout", "proxy_buffering",
		"allow", "deny", "limit_req", "limit_req_status", "limit_req_log_level", "auth_basic", "auth_basic_user_file"),
	// Maintenance gates, local, proxied plain requests: if (...) { return
	// CODE; }; canary flags: set, and the canary group's proxy_pass.
	"if":    set("return", "set", "proxy_pass"),
	"types": set(),
}

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// confStats is what the property checks count.
type confStats struct {
	servers     int
	maps        int
	upstreams   int
	locations   int
	listens     []string
	serverNames []string
}

// checkShape walks a parsed config: every directive must be allowed in its
// block, every map entry must be a key and a value.
func checkShape(ds []directive, ctx string, st *confStats) error {
	for _, d := range ds {
		if ctx == "map" || ctx == "geo" || ctx == "split_clients" {
			if d.isBlk || len(d.args) != 1 {
				return fmt.Errorf("map entry %q %q is not key value", d.name, d.args)
			}
			continue
		}
		if !allowed[ctx][d.name] {
			return fmt.Errorf("directive %q is not allowed in %s", d.name, ctx)
		}
		wantBlock := map[string]bool{"events": true, "http": true, "map": true, "geo": true, "upstream": true, "location": true, "types": true, "if": true, "split_clients": true}[d.name] ||
			(d.name == "server" && ctx == "http")
		if d.isBlk != wantBlock {
			return fmt.Errorf("directive %q in %s: block=%v", d.name, ctx, d.isBlk)
		}
		switch {
		case d.name == "server" && ctx == "http":
			st.servers++
		case d.name == "map" || d.name == "geo":
			st.maps++
		case d.name == "upstream":
			st.upstreams++
		case d.name == "location":
			st.locations++
		case d.name == "listen":
			st.listens = append(st.listens, strings.Join(d.args, " "))
		case d.name == "server_name":
			st.serverNames = append(st.serverNames, d.args...)
		}
		if d.isBlk {
			inner := d.name
			if d.name == "server" {
				inner = "server"
			}
			if err := checkShape(d.block, inner, st); err != nil {
				return err
			}
		}
	}
	return nil
}
