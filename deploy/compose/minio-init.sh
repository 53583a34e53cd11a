#!/bin/sh
# One-shot of docker-compose.yml (service `minio-init`, image minio/mc): the gateway's bucket and
# its own MinIO user, allowed that bucket and nothing else. Idempotent: it runs at every `up`.
# Reads MinIO's root credentials and the gateway's key (made by init-secrets.sh) from the
# volumes mounted under /run/secrets; BUCKET is the bucket the gateway's policy names.
set -eu
: "${BUCKET:?BUCKET is not set}"
MINIO_URL=${MINIO_URL:-http://minio:9000}
# mc keeps its aliases in a writable place of its own (its home may be read-only).
mcx() { mc --config-dir /tmp/mc "$@"; }

root_user=$(cat /run/secrets/minio/root-user)
root_password=$(cat /run/secrets/minio/root-password)
# The gateway's key, from its AWS credentials file (aws_access_key_id=…, aws_secret_access_key=…).
access_key=''
secret_key=''
while IFS='=' read -r name value; do
  case "$name" in
    aws_access_key_id) access_key=$value ;;
    aws_secret_access_key) secret_key=$value ;;
  esac
done </run/secrets/s3/credentials
if [ -z "$access_key" ] || [ -z "$secret_key" ]; then
  echo "minio-init: /run/secrets/s3/credentials holds no aws_access_key_id/aws_secret_access_key" >&2
  exit 1
fi

mcx alias set local "$MINIO_URL" "$root_user" "$root_password" >/dev/null
mcx mb --ignore-existing "local/$BUCKET"

# What the gateway's S3 driver does: objects (put, get, delete, multipart uploads) and listing
# (the sweeper and scrub); on this bucket only.
cat >/tmp/gateway-policy.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$BUCKET/*"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetBucketLocation"],
      "Resource": ["arn:aws:s3:::$BUCKET"]
    }
  ]
}
JSON
mcx admin policy create local fhir-binary-gateway /tmp/gateway-policy.json
mcx admin user add local "$access_key" "$secret_key"
# Attaching an attached policy is an error: detach first (a no-op the first time).
mcx admin policy detach local fhir-binary-gateway --user "$access_key" >/dev/null 2>&1 || true
mcx admin policy attach local fhir-binary-gateway --user "$access_key"
echo "minio-init: bucket $BUCKET ready; the gateway's user may use it and nothing else"
