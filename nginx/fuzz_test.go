package nginx

import (
	"slices"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
)

// FuzzRender: whatever a bundle holds, Render either refuses it or writes
// exactly the servers, listens, names, locations, maps and upstreams the
// model asks for, with only allow-listed directives and no comments.
func FuzzRender(f *testing.F) {
	f.Add("app.example.com", "public", "https://new.example.com/x", "/old", "X-Frame-Options", "DENY", "^/a/(.*)$", `/b/\1`)
	f.Add("*.example.com", "a/b", "http://x.example.com/?q=1", "", "X-A", "a b", "x", "y")
	f.Add("a.test; } server { listen 1; }", "x", "http://x/", "/p", "X", "v", "a", "b")
	f.Add("a.test", `x"; root /`, "http://x/$1", "/p;q", "X-Y", "v\"; add_header A b", `"`, "$host")
	f.Add("A.Example.COM", "../etc", "http://x/#frag", "/a b", "X\nY", "v\nw", "a{1,2}", `\9`)
	f.Fuzz(func(t *testing.T, host, root, url, path, hname, hvalue, from, to string) {
		g := globalConfig(t, "")
		web := webapp(host, "fixed.example.com")
		web.WebApp.Middleware = []bundle.Middleware{{Name: "headers", Config: map[string]any{hname: hvalue}}}
		a := app("fuzz", one(map[int]int{0: 43124}), web,
			bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: root, Hosts: []string{"static.example.com"}}},
			bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"redirect.example.com"},
				Actions: []bundle.RedirectAction{{Path: path, URL: url}, {Host: "fallback.example.com"}}}},
			bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000,
				ReversingHost: "rp.example.com", RewriteRequest: []bundle.Rewrite{{Header: "X-Fuzz", From: from, To: to}}}})
		out, err := Render(g, []App{a}, Paths{Prefix: "/srv/keter/etc/nginx"})
		if err != nil {
			return
		}
		ds, comments, err := parseConf(string(out.Main))
		if err != nil {
			t.Fatalf("rendered config does not parse: %v\n%s", err, out.Main)
		}
		if len(comments) != 1 || comments[0]+"\n" != header {
			t.Fatalf("comments %q in\n%s", comments, out.Main)
		}
		st := &confStats{}
		if err := checkShape(ds, "main", st); err != nil {
			t.Fatalf("%v in\n%s", err, out.Main)
		}
		wantLoc := 5
		if path != "" {
			wantLoc = 6
		}
		if st.servers != 5 || st.maps != 2 || st.upstreams != 2 || st.locations != wantLoc {
			t.Fatalf("servers %d maps %d upstreams %d locations %d (want 5 2 2 %d) in\n%s", st.servers, st.maps, st.upstreams, st.locations, wantLoc, out.Main)
		}
		if want := []string{"80 default_server", "80", "80", "80", "80"}; !slices.Equal(st.listens, want) {
			t.Fatalf("listens %q, want %q", st.listens, want)
		}
		h := strings.ToLower(host)
		names := []string{"_", h, "fixed.example.com", "static.example.com", "redirect.example.com", "rp.example.com"}
		if strings.HasPrefix(h, "*.") {
			names[1] = `~^[^.]+\.` + strings.ReplaceAll(h[2:], ".", `\.`) + `$`
		}
		if h == "fixed.example.com" {
			names = slices.Delete(names, 1, 2)
		}
		if !slices.Equal(st.serverNames, names) {
			t.Fatalf("server names %q, want %q", st.serverNames, names)
		}
	})
}
