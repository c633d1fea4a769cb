// Package aws is the EC2 adapter of the VPC reconciler: it implements
// vpc.Cloud with aws-sdk-go-v2 (DescribeRouteTables, CreateRoute,
// ReplaceRoute, DeleteRoute, ModifyInstanceAttribute) and is the only
// package that imports the AWS SDK. Retries belong to the reconciler, which
// backs off with jitter: the SDK's own retryer is switched off so a
// throttled call is reported at once.
package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/terrane-net/terrane/internal/cloud/vpc"
)

// Options say how to reach EC2.
type Options struct {
	Region string
	// Endpoint overrides the EC2 endpoint URL (a VPC endpoint, or a local
	// fake such as internal/cloud/ec2fake); empty uses the region's.
	Endpoint string
	// AccessKeyID and SecretAccessKey, when set, are used instead of the
	// SDK's default chain (environment, shared files, instance role): for
	// tests against a fake.
	AccessKeyID, SecretAccessKey string
}

// EC2 implements vpc.Cloud.
type EC2 struct {
	client *ec2.Client
}

var _ vpc.Cloud = (*EC2)(nil)

// New builds the client. Credentials come from Options or the SDK's
// default chain; nothing is called until the first request.
func New(ctx context.Context, opts Options) (*EC2, error) {
	if opts.Region == "" {
		return nil, errors.New("aws: region is required")
	}
	loads := []func(*config.LoadOptions) error{config.WithRegion(opts.Region)}
	if opts.AccessKeyID != "" || opts.SecretAccessKey != "" {
		loads = append(loads, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("aws: load configuration: %w", err)
	}
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = sdk.String(opts.Endpoint)
		}
		o.Retryer = sdk.NopRetryer{}
	})
	return &EC2{client: client}, nil
}

// RouteTable implements vpc.Cloud.
func (e *EC2) RouteTable(ctx context.Context, table string) ([]vpc.CloudRoute, error) {
	out, err := e.client.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{table}})
	if err != nil {
		return nil, wrap("describe route table "+table, err)
	}
	var routes []vpc.CloudRoute
	for _, rt := range out.RouteTables {
		if sdk.ToString(rt.RouteTableId) != table {
			continue
		}
		for _, r := range rt.Routes {
			cr, ok := cloudRoute(r)
			if ok {
				routes = append(routes, cr)
			}
		}
	}
	return routes, nil
}

// cloudRoute converts one route; ok is false for destinations that are not
// CIDRs (prefix lists), which Terrane never owns.
func cloudRoute(r types.Route) (vpc.CloudRoute, bool) {
	s := sdk.ToString(r.DestinationCidrBlock)
	if s == "" {
		s = sdk.ToString(r.DestinationIpv6CidrBlock)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return vpc.CloudRoute{}, false
	}
	cr := vpc.CloudRoute{Dst: p.Masked(), Instance: sdk.ToString(r.InstanceId), Origin: string(r.Origin), Blackhole: r.State == types.RouteStateBlackhole}
	for _, t := range []*string{r.GatewayId, r.NatGatewayId, r.TransitGatewayId, r.VpcPeeringConnectionId, r.EgressOnlyInternetGatewayId, r.LocalGatewayId, r.CarrierGatewayId} {
		if t != nil {
			cr.Target = *t
			break
		}
	}
	if cr.Target == "" && cr.Instance == "" {
		cr.Target = sdk.ToString(r.NetworkInterfaceId)
	}
	return cr, true
}

// destination fills the destination field of the family.
func destination(dst netip.Prefix) (v4, v6 *string) {
	if dst.Addr().Is4() {
		return sdk.String(dst.String()), nil
	}
	return nil, sdk.String(dst.String())
}

// CreateRoute implements vpc.Cloud.
func (e *EC2) CreateRoute(ctx context.Context, table string, dst netip.Prefix, instance string) error {
	v4, v6 := destination(dst)
	_, err := e.client.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: sdk.String(table), DestinationCidrBlock: v4, DestinationIpv6CidrBlock: v6, InstanceId: sdk.String(instance)})
	return wrap(fmt.Sprintf("create route %s → %s in %s", dst, instance, table), err)
}

// ReplaceRoute implements vpc.Cloud.
func (e *EC2) ReplaceRoute(ctx context.Context, table string, dst netip.Prefix, instance string) error {
	v4, v6 := destination(dst)
	_, err := e.client.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: sdk.String(table), DestinationCidrBlock: v4, DestinationIpv6CidrBlock: v6, InstanceId: sdk.String(instance)})
	return wrap(fmt.Sprintf("replace route %s → %s in %s", dst, instance, table), err)
}

// DeleteRoute implements vpc.Cloud.
func (e *EC2) DeleteRoute(ctx context.Context, table string, dst netip.Prefix) error {
	v4, v6 := destination(dst)
	_, err := e.client.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: sdk.String(table), DestinationCidrBlock: v4, DestinationIpv6CidrBlock: v6})
	return wrap(fmt.Sprintf("delete route %s from %s", dst, table), err)
}

// DisableSourceDestCheck implements vpc.Cloud.
func (e *EC2) DisableSourceDestCheck(ctx context.Context, instance string) error {
	_, err := e.client.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: sdk.String(instance), SourceDestCheck: &types.AttributeBooleanValue{Value: sdk.Bool(false)}})
	return wrap("disable the source/destination check of "+instance, err)
}

// wrap names the operation and maps EC2's error codes onto vpc's errors.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		var kind error
		switch code := ae.ErrorCode(); code {
		case "RequestLimitExceeded", "Throttling", "ThrottlingException":
			kind = vpc.ErrThrottled
		case "RouteLimitExceeded":
			kind = vpc.ErrRouteLimit
		case "InvalidRouteTableID.NotFound", "InvalidRoute.NotFound", "InvalidInstanceID.NotFound":
			kind = vpc.ErrNotFound
		}
		if kind != nil {
			return fmt.Errorf("%s: %w (%s: %s)", op, kind, ae.ErrorCode(), ae.ErrorMessage())
		}
		return fmt.Errorf("%s: %s: %s", op, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("%s: %w", op, err)
}
