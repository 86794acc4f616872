package uploader

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// Explain turns a store error into a message an operator can act on. It
// recognises common S3 failures (credentials, bucket, region, TLS,
// connectivity) and the package's sentinels; other errors are returned as
// their text. cmd decides how to present it.
func Explain(err error) string {
	if err == nil {
		return ""
	}
	if er, ok := s3Error(err); ok {
		bucket := er.BucketName
		if bucket == "" {
			bucket = "the bucket"
		}
		switch er.Code {
		case "InvalidAccessKeyId":
			return "the access key id is not known to the server: check the configured credentials (or AWS_ACCESS_KEY_ID/AWS_PROFILE)"
		case "SignatureDoesNotMatch":
			return "the server rejected the request signature: the secret key is wrong for this access key (or a proxy alters requests)"
		case "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
			return "the session token is invalid or expired: refresh the temporary credentials or the IAM role"
		case "AccessDenied", "AllAccessDisabled":
			return fmt.Sprintf("access denied to %s: the credentials lack permission (segvault needs s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject, and kms:GenerateDataKey/kms:Decrypt with SSE-KMS)", bucket)
		case "NoSuchBucket":
			return fmt.Sprintf("bucket %s does not exist at this endpoint: check the bucket name, endpoint and region", bucket)
		case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
			if er.Region != "" {
				return fmt.Sprintf("wrong region: %s is in region %s: set region to %s", bucket, er.Region, er.Region)
			}
			return fmt.Sprintf("wrong region or endpoint for %s: set the bucket's region (%s)", bucket, er.Message)
		case "InvalidObjectState", "ObjectLockConfigurationNotFoundError", "InvalidRequest":
			if strings.Contains(strings.ToLower(er.Message), "lock") {
				return fmt.Sprintf("object lock retention was requested but %s has no object lock: create the bucket with object lock or drop retention_mode", bucket)
			}
		case "SlowDown", "Throttling", "RequestThrottled", "TooManyRequests":
			return "the server is throttling requests: lower upload concurrency or bandwidth; segvault retries"
		case "XMinioStorageFull":
			return "the MinIO server is out of space"
		}
		if er.StatusCode >= 500 {
			return fmt.Sprintf("the storage server failed (%d %s): transient, segvault retries: %s", er.StatusCode, er.Code, er.Message)
		}
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	switch {
	case errors.As(err, &hne):
		return fmt.Sprintf("TLS verification failed: the server certificate is not valid for %s: use the name in the certificate as endpoint (%v)", hne.Host, err)
	case errors.As(err, &uae) || errors.As(err, &cve):
		return fmt.Sprintf("TLS verification failed: the server certificate is not signed by a trusted CA: set --s3-ca-file to the CA's PEM file (%v)", err)
	case errors.As(err, &cie):
		return fmt.Sprintf("TLS verification failed: the server certificate is invalid or expired (%v)", err)
	case errors.As(err, &rhe) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the endpoint does not speak TLS: use an http:// endpoint with --s3-insecure if plain HTTP is intended"
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connection refused: nothing listens at the endpoint: check host and port, and that the server runs (%v)", err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Sprintf("cannot resolve %s: check the endpoint host name and DNS", dnsErr.Name)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("the storage server did not answer in time: check network, firewall and endpoint (%v)", err)
	}
	switch {
	case errors.Is(err, ErrConflict):
		return fmt.Sprintf("an archived object exists with different content and was not overwritten: investigate (two writers, or a changed file): %v", err)
	case errors.Is(err, ErrIntegrity):
		return fmt.Sprintf("archived data failed verification (corruption in the store or in transit): %v", err)
	case errors.Is(err, ErrUnknownKey):
		return fmt.Sprintf("archived data is encrypted with a key that is not configured: add its key file: %v", err)
	case errors.Is(err, ErrNotFound):
		return fmt.Sprintf("object not found: %v", err)
	}
	return err.Error()
}
