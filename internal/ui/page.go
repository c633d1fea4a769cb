package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed assets/page.html.tmpl assets/page.css assets/page.js
var assets embed.FS

// page is the one template both the server and terrane plan --html
// render. Its style and script are inlined: the page is one file, with
// nothing to fetch (no CDN, no build step).
var page = template.Must(template.New("page.html.tmpl").Funcs(template.FuncMap{
	"css":         func() template.CSS { return template.CSS(mustAsset("assets/page.css")) },
	"js":          func() template.JS { return template.JS(mustAsset("assets/page.js")) },
	"heat":        func(s float64) template.CSS { return template.CSS("--heat: " + Heat(s)) },
	"gaugeStyle":  gaugeStyle,
	"percent":     Percent,
	"budget":      budget,
	"join":        strings.Join,
	"deref":       func(b *bool) bool { return b != nil && *b },
	"since":       since,
	"silentAfter": func() string { return SilentAfter.String() },
	"meta":        meta,
}).ParseFS(assets, "assets/page.html.tmpl"))

func mustAsset(name string) string {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(err) // embedded at build time: cannot be missing
	}
	return string(b)
}

// ContentSecurityPolicy is the policy a server sends with the page: the
// one inline script by its hash (no other script runs, even if a value
// ever escaped the template's escaping), inline style, fetches to the
// page's own origin only, and no framing, base or form targets.
func ContentSecurityPolicy() string {
	sum := sha256.Sum256([]byte(mustAsset("assets/page.js")))
	return "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}

// Render writes the page of v.
func Render(w io.Writer, v *View) error {
	return page.Execute(w, v)
}

func gaugeStyle(g Gauge) template.CSS {
	share := g.Share()
	if g.Budget <= 0 {
		share = 0
	}
	return template.CSS(fmt.Sprintf("width: %.1f%%; --heat: %s", 100*min(share, 1), Heat(share)))
}

func budget(n int) string {
	if n <= 0 {
		return "unbounded"
	}
	return fmt.Sprint(n)
}

// since says how long ago t was, relative to the page's making (the
// script keeps no clock of its own for it).
func since(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05 UTC")
}

// meta is what the script needs besides the hosts: the view's revision and
// each network's CIDR and block size, for the static page's search.
func meta(v *View) any {
	type net struct {
		Name      string `json:"name"`
		CIDR      string `json:"cidr"`
		BlockSize int    `json:"block_size"`
	}
	m := struct {
		Live     bool  `json:"live"`
		Revision int64 `json:"revision"`
		Networks []net `json:"networks"`
	}{Live: v.Live, Revision: v.Revision, Networks: []net{}}
	for _, n := range v.Networks {
		m.Networks = append(m.Networks, net{n.Name, n.CIDR, n.BlockSize})
	}
	return m
}
