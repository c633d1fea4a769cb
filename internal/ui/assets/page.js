// Terrane's topology page: opens groups into virtualised host lists, zooms,
// searches, and (when served live) follows the server's changes through
// server-sent events. The HTML is rendered by the server (or terrane plan
// --html); this script draws only the host rows in view.
(function () {
  "use strict";
  var ROW = 24, OVERSCAN = 10;
  var T = window.terrane = { refreshes: 0, longTasks: [] };
  try {
    new PerformanceObserver(function (l) {
      l.getEntries().forEach(function (e) { T.longTasks.push(e.duration); });
    }).observe({ type: "longtask", buffered: true });
  } catch (e) { /* no long task timing in this browser */ }

  var meta = JSON.parse(document.getElementById("view-meta").textContent);
  var hosts = [], byGroup = null, loadedAt = Date.now();

  function loadHosts() {
    hosts = JSON.parse(document.getElementById("hosts-data").textContent) || [];
    byGroup = null;
    loadedAt = Date.now(); // ages in the list were measured when the view was made
  }
  // hostsOf lists the hosts of a leaf group ("network/path"), by name.
  function hostsOf(key) {
    if (!byGroup) {
      byGroup = {};
      hosts.forEach(function (h) {
        for (var net in h.g) {
          var k = net + "/" + h.g[net];
          (byGroup[k] = byGroup[k] || []).push(h);
        }
      });
    }
    return byGroup[key] || [];
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function seen(h) {
    if (h.s < 0) return meta.live ? "never heard from" : "";
    return "seen " + (h.s + Math.floor((Date.now() - loadedAt) / 1000)) + " s ago";
  }
  function hostRow(h, net) {
    var blocks = h.b.filter(function (b) { return !net || b.net === net; }).map(function (b) {
      return '<span class="blk" title="' + b.u + ' of ' + b.z + ' addresses in use">' + esc(b.p) + " " + b.u + "/" + b.z + "</span>";
    }).join("");
    return (h.x ? '<span class="tag silent">silent</span>' : "") + '<span class="hname">' + esc(h.n) + "</span> " +
      '<span class="small">' + esc(h.ip || "") + " " + esc(seen(h)) + "</span> " + (blocks || '<span class="small">no block yet</span>');
  }

  // A virtualised list: a spacer as tall as every row, and only the rows
  // in view (plus a few) drawn, absolutely placed.
  function drawList(box) {
    var key = box.getAttribute("data-hosts-of");
    var net = key.slice(0, key.indexOf("/"));
    var list = hostsOf(key);
    box.setAttribute("data-count", list.length);
    if (!list.length) {
      box.innerHTML = '<div class="hrow small" style="top:0">no host has joined</div>';
      box.style.height = ROW + "px";
      return;
    }
    box.style.height = Math.min(list.length * ROW, 360) + "px";
    var first = Math.max(0, Math.floor(box.scrollTop / ROW) - OVERSCAN);
    var last = Math.min(list.length, Math.ceil((box.scrollTop + box.clientHeight) / ROW) + OVERSCAN);
    var html = ['<div style="height:' + list.length * ROW + 'px"></div>'];
    for (var i = first; i < last; i++) {
      var h = list[i];
      html.push('<div class="hrow' + (h.x ? " silent" : "") + (h.n === flash ? " flash" : "") + '" data-host="' + esc(h.n) + '" style="top:' + i * ROW + 'px">' + hostRow(h, net) + "</div>");
    }
    box.innerHTML = html.join("");
  }
  function drawOpenLists() {
    document.querySelectorAll("details[data-leaf][open] > .gbody > .hosts").forEach(drawList);
  }
  var flash = "";

  document.addEventListener("toggle", function (e) {
    var d = e.target;
    if (d.matches && d.matches("details[data-leaf]") && d.open) drawList(d.querySelector(":scope > .gbody > .hosts"));
  }, true);
  document.addEventListener("scroll", function (e) {
    if (e.target.classList && e.target.classList.contains("hosts")) {
      var box = e.target;
      if (!box.pending) {
        box.pending = true;
        requestAnimationFrame(function () { box.pending = false; drawList(box); });
      }
    }
  }, true);

  // Zoom: only the group, its ancestors (as the way there) and its
  // descendants stay visible. The zoom lives in the URL's fragment.
  function zoomKey() {
    var m = /^#zoom=(.*)$/.exec(location.hash);
    if (!m) return "";
    try { return decodeURIComponent(m[1]); } catch (e) { return ""; } // a malformed fragment: no zoom
  }
  function applyZoom() {
    var z = zoomKey();
    document.getElementById("zoombar").hidden = !z;
    document.getElementById("zoomname").textContent = z;
    var net = z ? z.slice(0, z.indexOf("/")) : "";
    document.querySelectorAll(".network").forEach(function (n) {
      n.classList.toggle("hidden", !!z && n.getAttribute("data-network") !== net);
    });
    document.querySelectorAll("details.group").forEach(function (d) {
      var k = d.getAttribute("data-key");
      var on = !z || k === z || z.indexOf(k + "/") === 0 || k.indexOf(z + "/") === 0;
      d.classList.toggle("hidden", !on);
      if (z && (k === z || z.indexOf(k + "/") === 0)) d.open = true;
    });
    drawOpenLists();
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-zoom]");
    if (b) {
      e.preventDefault();
      location.hash = "zoom=" + encodeURIComponent(b.getAttribute("data-zoom"));
    }
    var r = e.target.closest && e.target.closest("[data-reveal]");
    if (r) {
      e.preventDefault();
      reveal(r.getAttribute("data-reveal"));
    }
  });
  document.getElementById("unzoom").addEventListener("click", function (e) {
    e.preventDefault();
    history.pushState(null, "", location.pathname + location.search);
    applyZoom();
  });
  window.addEventListener("hashchange", applyZoom);

  // reveal zooms into a host's group and scrolls its row into view.
  function reveal(name) {
    var h = hosts.find(function (x) { return x.n === name; });
    if (!h) return;
    var net = Object.keys(h.g).sort()[0];
    var key = net + "/" + h.g[net];
    flash = name;
    location.hash = "zoom=" + encodeURIComponent(key);
    applyZoom();
    var box = document.querySelector('.hosts[data-hosts-of="' + CSS.escape(key) + '"]');
    if (box) {
      box.scrollTop = Math.max(0, hostsOf(key).indexOf(h) * ROW - 2 * ROW);
      drawList(box);
      box.scrollIntoView({ block: "center" });
    }
  }

  // Addresses as BigInts, for the static page's search.
  function parseAddr(s) {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(s)) {
      var p = s.split(".").map(Number);
      if (p.some(function (x) { return x > 255; })) return null;
      return { v6: false, n: BigInt(p[0]) << 24n | BigInt(p[1]) << 16n | BigInt(p[2]) << 8n | BigInt(p[3]) };
    }
    if (s.indexOf(":") < 0 || !/^[0-9a-fA-F:]+$/.test(s)) return null;
    var halves = s.split("::");
    if (halves.length > 2) return null;
    var head = halves[0] ? halves[0].split(":") : [], tail = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
    var fill = 8 - head.length - tail.length;
    if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
    var words = head.concat(new Array(fill).fill("0"), tail), n = 0n;
    for (var i = 0; i < 8; i++) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(words[i])) return null;
      n = n << 16n | BigInt(parseInt(words[i], 16));
    }
    return { v6: true, n: n };
  }
  function contains(prefix, a) {
    var i = prefix.lastIndexOf("/"), p = parseAddr(prefix.slice(0, i)), bits = Number(prefix.slice(i + 1));
    if (!p || p.v6 !== a.v6) return false;
    var width = a.v6 ? 128n : 32n, shift = width - BigInt(bits);
    return (p.n >> shift) === (a.n >> shift);
  }
  function blockOf(a, size) {
    var width = a.v6 ? 128 : 32, shift = BigInt(width - size), n = (a.n >> shift) << shift;
    if (!a.v6) return [24n, 16n, 8n, 0n].map(function (s) { return String(n >> s & 255n); }).join(".") + "/" + size;
    var w = [];
    for (var i = 7; i >= 0; i--) w.push((n >> BigInt(16 * i) & 0xffffn).toString(16));
    return w.join(":") + "/" + size;
  }
  // localSearch answers from the page alone (terrane plan --html): a host
  // by name, an address by the block and leaf group holding it.
  function localSearch(q) {
    var h = hosts.find(function (x) { return x.n === q; });
    if (h) return { query: q, kind: "host", host: h };
    var a = parseAddr(q);
    if (!a) return { query: q, kind: "none", message: 'no host is named "' + q + '", and it is not an IP address' };
    var places = [];
    meta.networks.forEach(function (n) {
      if (!contains(n.cidr, a)) return;
      var pl = { network: n.name, block: blockOf(a, n.block_size) };
      document.querySelectorAll('details[data-leaf][data-network="' + CSS.escape(n.name) + '"]').forEach(function (d) {
        if (d.getAttribute("data-prefixes").split(" ").some(function (p) { return p && contains(p, a); })) pl.group = d.getAttribute("data-path");
      });
      hosts.forEach(function (x) {
        x.b.forEach(function (b) { if (b.net === n.name && contains(b.p, a)) { pl.host = x.n; pl.block = b.p; } });
      });
      places.push(pl);
    });
    if (!places.length) return { query: q, kind: "none", message: q + " is in no network of the topology" };
    return { query: q, kind: "address", explanation: { addr: q, holders: null, places: places } };
  }

  function line(html) { return '<div class="line">' + html + "</div>"; }
  function hostLink(name) { return '<a href="#" data-reveal="' + esc(name) + '">' + esc(name) + "</a>"; }
  // showAnswer renders a search answer: the same sentences as `terrane
  // ctl endpoints explain`.
  function showAnswer(ans) {
    var box = document.getElementById("answer"), out = ['<span class="close" title="close">✕</span>'];
    box.setAttribute("data-kind", ans.kind);
    if (ans.kind === "none") out.push(line(esc(ans.message)));
    if (ans.kind === "host") {
      var h = ans.host;
      out.push(line("<b>host " + hostLink(h.n) + "</b>" + (h.ip ? " (" + esc(h.ip) + ")" : "") + (h.x ? ' <span class="tag silent">silent</span>' : "") + " " + esc(seen(h))));
      Object.keys(h.g).sort().forEach(function (net) { out.push(line("network " + esc(net) + ": group " + esc(h.g[net] || "-"))); });
      h.b.forEach(function (b) { out.push(line("block " + esc(b.p) + " in " + esc(b.net) + ": " + b.u + " of " + b.z + " addresses in use")); });
      if (!h.b.length) out.push(line("no block yet"));
    }
    if (ans.explanation) {
      var ex = ans.explanation;
      if (ans.kind !== "address") out.push(line("<b>" + esc(ans.kind === "pod" ? "pod " : "VM port ") + esc(ans.query) + "</b> has address " + esc(ex.addr)));
      if (ex.holders === null) out.push(line(esc(ex.addr) + ": a plan knows where an address lies, not who holds it (the live page says)"));
      else if (!ex.holders.length) out.push(line(esc(ex.addr) + " is free: nobody holds it"));
      (ex.holders || []).forEach(function (h) {
        var who = h.path === "cni" ? "pod " + (h.pod || h.endpoint) + " (attachment " + h.endpoint + ")" : "VM port " + h.endpoint;
        out.push(line(esc(ex.addr) + " is held by " + esc(who) + ", in network " + esc(h.network) + ", block " + esc(h.block) + " on host " + hostLink(h.host) + (h.since ? ", since " + esc(h.since) : "")));
      });
      ex.places.forEach(function (pl) {
        var owner = pl.host ? "host " + hostLink(pl.host) + "'s" + (pl.issuer ? ", issued by the " + esc(pl.issuer) : "") : "claimed by no host";
        out.push(line("network " + esc(pl.network) + ": group " + esc(pl.group || "-") + ", block " + esc(pl.block || "-") + " (" + owner + ")"));
      });
      (ex.findings || []).forEach(function (f) {
        out.push(line('<span class="bad">finding: ' + esc([f.kind, f.network, f.subject].filter(Boolean).join(" ") + ": " + f.detail) + "</span>"));
      });
    }
    box.innerHTML = out.join("");
    box.hidden = false;
    box.querySelector(".close").onclick = function () { box.hidden = true; };
  }
  var lastQuery = "";
  function search(q) {
    q = q.trim();
    lastQuery = q;
    if (!q) return;
    if (!meta.live) { showAnswer(localSearch(q)); return; }
    fetch("search?q=" + encodeURIComponent(q), { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (a) { if (q === lastQuery) showAnswer(a.error ? { query: q, kind: "none", message: a.error } : a); })
      .catch(function (e) { showAnswer({ query: q, kind: "none", message: "search failed: " + e }); });
  }
  document.getElementById("search-form").addEventListener("submit", function (e) {
    e.preventDefault();
    search(document.getElementById("search").value);
  });

  // Live: every event says the state moved; the page fetches itself again
  // and swaps its parts, keeping what is open, the zoom and the answer.
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var open = {};
    document.querySelectorAll("details.group[open]").forEach(function (d) { open[d.getAttribute("data-key")] = true; });
    var scrolls = {};
    document.querySelectorAll(".hosts").forEach(function (b) { scrolls[b.getAttribute("data-hosts-of")] = b.scrollTop; });
    fetch("view", { cache: "no-store", credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (text) {
      var doc = new DOMParser().parseFromString(text, "text/html");
      doc.querySelectorAll("[data-part]").forEach(function (part) {
        var cur = document.getElementById(part.id);
        if (cur) cur.replaceWith(document.adoptNode(part));
      });
      document.getElementById("hosts-data").textContent = doc.getElementById("hosts-data").textContent;
      meta = JSON.parse(doc.getElementById("view-meta").textContent);
      document.getElementById("rev").textContent = meta.revision;
      document.body.setAttribute("data-revision", meta.revision);
      loadHosts();
      document.querySelectorAll("details.group").forEach(function (d) { if (open[d.getAttribute("data-key")]) d.open = true; });
      document.querySelectorAll(".hosts").forEach(function (b) { b.scrollTop = scrolls[b.getAttribute("data-hosts-of")] || 0; });
      applyZoom();
      T.refreshes++;
      if (lastQuery && !document.getElementById("answer").hidden) search(lastQuery);
    }).catch(function (e) {
      document.body.classList.add("offline");
      console.log("refresh failed", e);
    }).finally(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }
  T.refresh = refresh;

  loadHosts();
  document.body.setAttribute("data-revision", meta.revision);
  applyZoom();
  if (meta.live && window.EventSource) {
    var es = new EventSource("events");
    es.addEventListener("change", function () { document.body.classList.remove("offline"); refresh(); });
    es.addEventListener("open", function () { document.body.classList.remove("offline"); });
    es.onerror = function () { document.body.classList.add("offline"); };
  }
  T.readyAt = performance.now();
  document.body.setAttribute("data-ready", "1");
})();
