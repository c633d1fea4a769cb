package ec2fake

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// APIVersion is the EC2 API version the fake answers (the one every
// aws-sdk-go-v2 EC2 client sends).
const APIVersion = "2016-11-15"

const xmlns = "http://ec2.amazonaws.com/doc/" + APIVersion + "/"

// maxRequest bounds a request body.
const maxRequest = 1 << 20

// ec2Error is an error answer.
type ec2Error struct {
	status    int
	code, msg string
}

func (e *ec2Error) Error() string { return e.code + ": " + e.msg }

func badRequest(code, format string, args ...any) *ec2Error {
	return &ec2Error{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP answers one EC2 query-protocol request.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	reqID := fmt.Sprintf("fake-%08d-0000-4000-8000-000000000000", f.requests)
	f.mu.Unlock()
	form, err := readForm(r)
	if err != nil {
		writeError(w, reqID, badRequest("MalformedQueryString", "%v", err))
		return
	}
	action := form.Get("Action")
	if v := form.Get("Version"); v != APIVersion {
		writeError(w, reqID, badRequest("InvalidParameterValue", "Version %q: this endpoint speaks %s", v, APIVersion))
		return
	}
	if e := f.injected(action); e != nil {
		writeError(w, reqID, e)
		return
	}
	var body any
	var changes []Change
	switch action {
	case "DescribeRouteTables":
		body, err = f.describeRouteTables(form)
	case "CreateRoute":
		changes, err = f.createRoute(form)
	case "ReplaceRoute":
		changes, err = f.replaceRoute(form)
	case "DeleteRoute":
		changes, err = f.deleteRoute(form)
	case "ModifyInstanceAttribute":
		changes, err = f.modifyInstanceAttribute(form)
	default:
		err = badRequest("InvalidAction", "the action %q is not valid for this web service (the fake answers DescribeRouteTables, CreateRoute, ReplaceRoute, DeleteRoute, ModifyInstanceAttribute)", action)
	}
	if err != nil {
		writeError(w, reqID, err)
		return
	}
	if body == nil {
		body = &returnResponse{XMLName: xml.Name{Local: action + "Response"}, Return: true}
	}
	f.notify(changes)
	writeXML(w, http.StatusOK, reqID, body)
}

// injected counts the call and returns a throttle or failure answer if one
// is due.
func (f *Fake) injected(action string) *ec2Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[action]++
	if f.throttle != nil && f.throttle(action) {
		return &ec2Error{status: http.StatusServiceUnavailable, code: "RequestLimitExceeded", msg: "Request limit exceeded."}
	}
	for i, fl := range f.failures {
		if fl.action == "" || fl.action == action {
			f.failures = append(f.failures[:i], f.failures[i+1:]...)
			return &ec2Error{status: fl.status, code: fl.code, msg: fl.msg}
		}
	}
	return nil
}

func (f *Fake) notify(changes []Change) {
	if f.onChange == nil || len(changes) == 0 {
		return
	}
	f.hookMu.Lock()
	defer f.hookMu.Unlock()
	for _, c := range changes {
		f.onChange(c)
	}
}

func readForm(r *http.Request) (url.Values, error) {
	if r.Method != http.MethodPost {
		return r.URL.Query(), nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxRequest {
		return nil, fmt.Errorf("request body larger than %d bytes", maxRequest)
	}
	return url.ParseQuery(string(b))
}

// Wire shapes, with EC2's element names.

type routeTablesResponse struct {
	XMLName   xml.Name        `xml:"DescribeRouteTablesResponse"`
	Xmlns     string          `xml:"xmlns,attr"`
	RequestID string          `xml:"requestId"`
	Tables    []routeTableXML `xml:"routeTableSet>item"`
}

type routeTableXML struct {
	ID     string     `xml:"routeTableId"`
	VPC    string     `xml:"vpcId"`
	Owner  string     `xml:"ownerId"`
	Routes []routeXML `xml:"routeSet>item"`
	Assoc  struct{}   `xml:"associationSet"`
	Vgws   struct{}   `xml:"propagatingVgwSet"`
	TagSet struct{}   `xml:"tagSet"`
}

type routeXML struct {
	Dst4     string `xml:"destinationCidrBlock,omitempty"`
	Dst6     string `xml:"destinationIpv6CidrBlock,omitempty"`
	Gateway  string `xml:"gatewayId,omitempty"`
	Instance string `xml:"instanceId,omitempty"`
	Owner    string `xml:"instanceOwnerId,omitempty"`
	ENI      string `xml:"networkInterfaceId,omitempty"`
	State    string `xml:"state"`
	Origin   string `xml:"origin"`
}

type returnResponse struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Return    bool   `xml:"return"`
}

type errorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Errors    []errXML `xml:"Errors>Error"`
	RequestID string   `xml:"RequestID"`
}

type errXML struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// ownerID is the account the fake pretends to be.
const ownerID = "123456789012"

func writeXML(w http.ResponseWriter, status int, reqID string, body any) {
	switch b := body.(type) {
	case *routeTablesResponse:
		b.Xmlns, b.RequestID = xmlns, reqID
	case *returnResponse:
		b.Xmlns, b.RequestID = xmlns, reqID
	}
	out, err := xml.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(out)
}

func writeError(w http.ResponseWriter, reqID string, err error) {
	e, ok := err.(*ec2Error)
	if !ok {
		e = &ec2Error{status: http.StatusInternalServerError, code: "InternalError", msg: err.Error()}
	}
	writeXML(w, e.status, reqID, &errorResponse{Errors: []errXML{{Code: e.code, Message: e.msg}}, RequestID: reqID})
}

// indexed reads a list parameter: Name.1, Name.2, …
func indexed(form url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[fmt.Sprintf("%s.%d", name, i)]
		if !ok {
			return out
		}
		out = append(out, v...)
	}
}

func (f *Fake) describeRouteTables(form url.Values) (any, error) {
	if len(indexed(form, "Filter.1.Value")) > 0 || form.Get("Filter.1.Name") != "" {
		return nil, badRequest("InvalidParameterValue", "the fake does not filter; name the tables with RouteTableId.N")
	}
	ids := indexed(form, "RouteTableId")
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ids) == 0 {
		for id := range f.tables {
			ids = append(ids, id)
		}
	}
	resp := &routeTablesResponse{}
	for _, id := range ids {
		t, ok := f.tables[id]
		if !ok {
			return nil, badRequest("InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist", id)
		}
		rt := routeTableXML{ID: id, VPC: t.vpc, Owner: ownerID}
		for _, r := range t.sorted() {
			x := routeXML{Gateway: r.Gateway, Instance: r.Instance, State: r.State, Origin: r.Origin}
			if r.Dst.Addr().Is4() {
				x.Dst4 = r.Dst.String()
			} else {
				x.Dst6 = r.Dst.String()
			}
			if r.Instance != "" {
				x.Owner, x.ENI = ownerID, "eni-"+strings.TrimPrefix(r.Instance, "i-")
			}
			rt.Routes = append(rt.Routes, x)
		}
		resp.Tables = append(resp.Tables, rt)
	}
	return resp, nil
}

// routeArgs reads the table and destination of a route call.
func (f *Fake) routeArgs(form url.Values) (*table, string, netip.Prefix, error) {
	id := form.Get("RouteTableId")
	if id == "" {
		return nil, "", netip.Prefix{}, badRequest("MissingParameter", "The request must contain the parameter routeTableId")
	}
	d4, d6 := form.Get("DestinationCidrBlock"), form.Get("DestinationIpv6CidrBlock")
	var dst netip.Prefix
	switch {
	case d4 != "" && d6 != "":
		return nil, "", dst, badRequest("InvalidParameterCombination", "give DestinationCidrBlock or DestinationIpv6CidrBlock, not both")
	case d4 == "" && d6 == "":
		return nil, "", dst, badRequest("MissingParameter", "The request must contain the parameter destinationCidrBlock or destinationIpv6CidrBlock")
	}
	s := d4 + d6
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Masked() != p || (d4 != "" && !p.Addr().Is4()) || (d6 != "" && !p.Addr().Is6()) {
		return nil, "", dst, badRequest("InvalidParameterValue", "Value (%s) for parameter destinationCidrBlock is invalid. This is not a valid CIDR block.", s)
	}
	t, ok := f.tables[id]
	if !ok {
		return nil, "", p, badRequest("InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist", id)
	}
	return t, id, p, nil
}

// newRouteArgs reads the table, destination and instance of a call that
// creates or replaces a route, and the route it asks for.
func (f *Fake) newRouteArgs(form url.Values) (*table, string, Route, error) {
	t, id, dst, err := f.routeArgs(form)
	if err != nil {
		return nil, "", Route{}, err
	}
	inst := form.Get("InstanceId")
	if inst == "" {
		return nil, "", Route{}, badRequest("MissingParameter", "the fake routes only to instances: give InstanceId")
	}
	if !strings.HasPrefix(inst, "i-") || len(inst) < 3 {
		return nil, "", Route{}, badRequest("InvalidInstanceID.Malformed", "Invalid id: %q", inst)
	}
	return t, id, Route{Dst: dst, Instance: inst, Origin: OriginCreateRoute, State: StateActive}, nil
}

func (f *Fake) createRoute(form url.Values) ([]Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, id, r, err := f.newRouteArgs(form)
	if err != nil {
		return nil, err
	}
	if _, exists := t.routes[r.Dst]; exists {
		return nil, badRequest("RouteAlreadyExists", "The route identified by %s already exists.", r.Dst)
	}
	if t.count() >= t.limit {
		return nil, badRequest("RouteLimitExceeded", "The maximum number of routes has been reached.")
	}
	t.routes[r.Dst] = r
	return []Change{{Kind: RouteCreated, Table: id, New: r, Routes: t.count()}}, nil
}

func (f *Fake) replaceRoute(form url.Values) ([]Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, id, r, err := f.newRouteArgs(form)
	if err != nil {
		return nil, err
	}
	old, exists := t.routes[r.Dst]
	if !exists || old.Origin != OriginCreateRoute {
		return nil, badRequest("InvalidParameterValue", "There is no route defined for '%s' in the route table. Use CreateRoute instead.", r.Dst)
	}
	t.routes[r.Dst] = r
	return []Change{{Kind: RouteReplaced, Table: id, Old: old, New: r, Routes: t.count()}}, nil
}

func (f *Fake) deleteRoute(form url.Values) ([]Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, id, dst, err := f.routeArgs(form)
	if err != nil {
		return nil, err
	}
	old, exists := t.routes[dst]
	switch {
	case !exists:
		return nil, badRequest("InvalidRoute.NotFound", "no route with destination-cidr-block %s in route table %s", dst, id)
	case old.Origin != OriginCreateRoute:
		return nil, badRequest("InvalidParameterValue", "cannot remove local route %s in route table %s", dst, id)
	}
	delete(t.routes, dst)
	return []Change{{Kind: RouteDeleted, Table: id, Old: old, Routes: t.count()}}, nil
}

func (f *Fake) modifyInstanceAttribute(form url.Values) ([]Change, error) {
	inst := form.Get("InstanceId")
	if inst == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter instanceId")
	}
	if !strings.HasPrefix(inst, "i-") {
		return nil, badRequest("InvalidInstanceID.Malformed", "Invalid id: %q", inst)
	}
	v := form.Get("SourceDestCheck.Value")
	if v == "" {
		return nil, badRequest("InvalidParameterCombination", "the fake keeps only SourceDestCheck: give SourceDestCheck.Value")
	}
	if v != "true" && v != "false" {
		return nil, badRequest("InvalidParameterValue", "SourceDestCheck.Value %q: want true or false", v)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srcDst[inst] = v == "true"
	return []Change{{Kind: AttributeChange, Instance: inst, SourceDestCheck: v == "true"}}, nil
}
