package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	keywardv1 "github.com/keyward/keyward/gen/go/keyward/v1"
	"github.com/keyward/keyward/repository"
	"github.com/keyward/keyward/service/errs"
	"github.com/keyward/keyward/service/keys"
)

// keyServer is the gRPC face of keys.Keys: it converts and delegates, nothing more.
type keyServer struct {
	keywardv1.UnimplementedKeyServiceServer
	keys  *keys.Keys
	roles *keys.Roles
	ips   *clientIPs
	now   func() time.Time // the clock a key's state is told by
}

func (s *keyServer) CreateKey(ctx context.Context, req *keywardv1.CreateKeyRequest) (*keywardv1.CreateKeyResponse, error) {
	k, secret, err := s.keys.Create(ctx, keys.KeyInput{
		Name:             req.GetName(),
		Owner:            req.GetOwner(),
		Environment:      environmentFromProto(req.GetEnvironment()),
		Roles:            req.GetRoles(),
		Permissions:      req.GetPermissions(),
		AllowedCIDRs:     req.GetAllowedCidrs(),
		AllowedCountries: req.GetAllowedCountries(),
		DeniedCountries:  req.GetDeniedCountries(),
		ExpireTime:       timeFromProto(req.GetExpireTime()),
		Metadata:         req.GetMetadata(),
		RateLimit:        rateLimitFromProto(req.GetRateLimit()),
		Quota:            quotaFromProto(req.GetQuota()),
		AllowedAudiences: req.GetAllowedAudiences(),
		MaxTokenTTL:      req.GetMaxTokenTtl().AsDuration(),
	})
	if err != nil {
		return nil, err
	}
	return &keywardv1.CreateKeyResponse{Key: keyToProto(k, s.now()), Secret: secret}, nil
}

func (s *keyServer) GetKey(ctx context.Context, req *keywardv1.GetKeyRequest) (*keywardv1.GetKeyResponse, error) {
	k, err := s.keys.Get(ctx, req.GetKeyId())
	if err != nil {
		return nil, err
	}
	return &keywardv1.GetKeyResponse{Key: keyToProto(k, s.now())}, nil
}

func (s *keyServer) ListKeys(ctx context.Context, req *keywardv1.ListKeysRequest) (*keywardv1.ListKeysResponse, error) {
	keys, next, err := s.keys.List(ctx, keys.ListKeysQuery{
		Filter: repository.KeyFilter{
			Owner:       req.GetOwner(),
			Environment: environmentFromProto(req.GetEnvironment()),
			State:       stateFilterFromProto(req.GetState()),
		},
		PageSize:  int(req.GetPageSize()),
		PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := &keywardv1.ListKeysResponse{Keys: make([]*keywardv1.Key, len(keys)), NextPageToken: next}
	for i, k := range keys {
		out.Keys[i] = keyToProto(k, now)
	}
	return out, nil
}

func (s *keyServer) UpdateKey(ctx context.Context, req *keywardv1.UpdateKeyRequest) (*keywardv1.UpdateKeyResponse, error) {
	in := req.GetKey()
	if in.GetKeyId() == "" {
		return nil, errs.InvalidArgument("key.key_id", "must be set")
	}
	k, err := s.keys.Update(ctx, in.GetKeyId(), keys.KeyInput{
		Name:             in.GetName(),
		Owner:            in.GetOwner(),
		Roles:            in.GetRoles(),
		Permissions:      in.GetPermissions(),
		AllowedCIDRs:     in.GetAllowedCidrs(),
		AllowedCountries: in.GetAllowedCountries(),
		DeniedCountries:  in.GetDeniedCountries(),
		ExpireTime:       timeFromProto(in.GetExpireTime()),
		Metadata:         in.GetMetadata(),
		RateLimit:        rateLimitFromProto(in.GetRateLimit()),
		Quota:            quotaFromProto(in.GetQuota()),
		AllowedAudiences: in.GetAllowedAudiences(),
		MaxTokenTTL:      in.GetMaxTokenTtl().AsDuration(),
	}, req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &keywardv1.UpdateKeyResponse{Key: keyToProto(k, s.now())}, nil
}

func (s *keyServer) RevokeKey(ctx context.Context, req *keywardv1.RevokeKeyRequest) (*keywardv1.RevokeKeyResponse, error) {
	k, err := s.keys.Revoke(ctx, req.GetKeyId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &keywardv1.RevokeKeyResponse{Key: keyToProto(k, s.now())}, nil
}

func (s *keyServer) RotateKey(ctx context.Context, req *keywardv1.RotateKeyRequest) (*keywardv1.RotateKeyResponse, error) {
	k, secret, err := s.keys.Rotate(ctx, req.GetKeyId(), req.GetGracePeriod().AsDuration())
	if err != nil {
		return nil, err
	}
	return &keywardv1.RotateKeyResponse{Key: keyToProto(k, s.now()), Secret: secret}, nil
}

func (s *keyServer) VerifyKey(ctx context.Context, req *keywardv1.VerifyKeyRequest) (*keywardv1.VerifyKeyResponse, error) {
	ip, err := s.ips.checkedIP(ctx, req.GetClientIp())
	if err != nil {
		return nil, err
	}
	v, err := s.keys.Verify(ctx, req.GetSecret(), keys.Check{Permission: req.GetRequiredPermission(), ClientIP: ip})
	if err != nil {
		return nil, err
	}
	out := &keywardv1.VerifyKeyResponse{
		Valid:         v.Valid(),
		Reason:        reasonToProto[v.Reason],
		Message:       v.Message(),
		ClientCountry: v.Country,
	}
	if ip.IsValid() {
		out.ClientIp = ip.String()
	}
	if v.RateLimited {
		out.RateLimitRemaining = &v.RateRemaining
		out.RateLimitResetTime = timestamppb.New(v.RateReset)
	}
	if v.QuotaLimited {
		out.QuotaRemaining = &v.QuotaRemaining
		out.QuotaResetTime = timeToProto(v.QuotaReset)
	}
	callFrom(ctx).subject = v.Subject
	if v.Key != nil {
		stored := v.Key.Stored()
		out.Key = keyToProto(&stored, s.now())
		out.EffectivePermissions = v.Effective
	}
	if !v.SecretExpireTime.IsZero() {
		out.SecretExpireTime = timestamppb.New(v.SecretExpireTime)
	}
	return out, nil
}

var reasonToProto = map[keys.Reason]keywardv1.VerificationReason{
	keys.ReasonOK:                  keywardv1.VerificationReason_VERIFICATION_REASON_OK,
	keys.ReasonMalformed:           keywardv1.VerificationReason_VERIFICATION_REASON_MALFORMED,
	keys.ReasonNotFound:            keywardv1.VerificationReason_VERIFICATION_REASON_NOT_FOUND,
	keys.ReasonSecretMismatch:      keywardv1.VerificationReason_VERIFICATION_REASON_SECRET_MISMATCH,
	keys.ReasonRotated:             keywardv1.VerificationReason_VERIFICATION_REASON_ROTATED,
	keys.ReasonRevoked:             keywardv1.VerificationReason_VERIFICATION_REASON_REVOKED,
	keys.ReasonExpired:             keywardv1.VerificationReason_VERIFICATION_REASON_EXPIRED,
	keys.ReasonPermissionDenied:    keywardv1.VerificationReason_VERIFICATION_REASON_PERMISSION_DENIED,
	keys.ReasonEnvironmentMismatch: keywardv1.VerificationReason_VERIFICATION_REASON_ENVIRONMENT_MISMATCH,
	keys.ReasonIPNotAllowed:        keywardv1.VerificationReason_VERIFICATION_REASON_IP_NOT_ALLOWED,
	keys.ReasonCountryNotAllowed:   keywardv1.VerificationReason_VERIFICATION_REASON_COUNTRY_NOT_ALLOWED,
}

// keyToProto converts a stored key, with its state as of now. Secret hashes are
// never converted.
func keyToProto(k *repository.Key, now time.Time) *keywardv1.Key {
	out := &keywardv1.Key{
		KeyId:                    k.ID,
		Name:                     k.Name,
		Owner:                    k.Owner,
		Environment:              environmentToProto(k.Environment),
		State:                    keywardv1.KeyState_KEY_STATE_ACTIVE,
		Roles:                    k.Roles,
		Permissions:              k.Permissions,
		AllowedCidrs:             k.AllowedCIDRs,
		AllowedCountries:         k.AllowedCountries,
		DeniedCountries:          k.DeniedCountries,
		ExpireTime:               timeToProto(k.ExpireTime),
		Metadata:                 k.Metadata,
		CreateTime:               timeToProto(k.CreateTime),
		UpdateTime:               timeToProto(k.UpdateTime),
		LastUsedTime:             timeToProto(k.LastUsedTime),
		RevokeTime:               timeToProto(k.RevokeTime),
		RevokeReason:             k.RevokeReason,
		SecretRotateTime:         timeToProto(k.SecretRotateTime),
		PreviousSecretExpireTime: timeToProto(k.PreviousSecretExpireTime),
		CreatedBy:                k.CreatedBy,
		AllowedAudiences:         k.AllowedAudiences,
	}
	if k.MaxTokenTTL > 0 {
		out.MaxTokenTtl = durationpb.New(k.MaxTokenTTL)
	}
	switch {
	case k.State == repository.KeyRevoked:
		out.State = keywardv1.KeyState_KEY_STATE_REVOKED
	case k.Expired(now):
		out.State = keywardv1.KeyState_KEY_STATE_EXPIRED
	}
	if len(k.PreviousSecretHash) == 0 || !now.Before(k.PreviousSecretExpireTime) {
		out.PreviousSecretExpireTime = nil
	}
	if k.RateLimit != nil {
		out.RateLimit = &keywardv1.RateLimit{RequestsPerSecond: k.RateLimit.RequestsPerSecond, Burst: k.RateLimit.Burst}
	}
	if k.Quota != nil {
		out.Quota = &keywardv1.Quota{Limit: k.Quota.Limit, Period: quotaPeriods[k.Quota.Period]}
	}
	return out
}

var quotaPeriods = map[string]keywardv1.QuotaPeriod{
	"hour":  keywardv1.QuotaPeriod_QUOTA_PERIOD_HOUR,
	"day":   keywardv1.QuotaPeriod_QUOTA_PERIOD_DAY,
	"month": keywardv1.QuotaPeriod_QUOTA_PERIOD_MONTH,
}

func rateLimitFromProto(r *keywardv1.RateLimit) *repository.RateLimit {
	if r == nil {
		return nil
	}
	return &repository.RateLimit{RequestsPerSecond: r.GetRequestsPerSecond(), Burst: r.GetBurst()}
}

// quotaFromProto converts a quota; QUOTA_PERIOD_UNSPECIFIED is a total that never
// refills (the empty period), as the API documents.
func quotaFromProto(q *keywardv1.Quota) *repository.Quota {
	if q == nil {
		return nil
	}
	for name, p := range quotaPeriods {
		if p == q.GetPeriod() {
			return &repository.Quota{Limit: q.GetLimit(), Period: name}
		}
	}
	return &repository.Quota{Limit: q.GetLimit()}
}

func environmentFromProto(e keywardv1.Environment) repository.Environment {
	switch e {
	case keywardv1.Environment_ENVIRONMENT_LIVE:
		return repository.EnvironmentLive
	case keywardv1.Environment_ENVIRONMENT_TEST:
		return repository.EnvironmentTest
	case keywardv1.Environment_ENVIRONMENT_UNSPECIFIED:
	}
	return ""
}

func environmentToProto(e repository.Environment) keywardv1.Environment {
	switch e {
	case repository.EnvironmentLive:
		return keywardv1.Environment_ENVIRONMENT_LIVE
	case repository.EnvironmentTest:
		return keywardv1.Environment_ENVIRONMENT_TEST
	}
	return keywardv1.Environment_ENVIRONMENT_UNSPECIFIED
}

func stateFilterFromProto(s keywardv1.KeyState) repository.KeyStateFilter {
	switch s {
	case keywardv1.KeyState_KEY_STATE_ACTIVE:
		return repository.KeyFilterActive
	case keywardv1.KeyState_KEY_STATE_REVOKED:
		return repository.KeyFilterRevoked
	case keywardv1.KeyState_KEY_STATE_EXPIRED:
		return repository.KeyFilterExpired
	case keywardv1.KeyState_KEY_STATE_UNSPECIFIED:
	}
	return repository.KeyFilterAny
}

func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromProto(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
