# s3_put's uploader (host/common.sh): stdin to s3://BUCKET/KEY, created, never
# replaced. shared/host/shell.ts renders it into the uploading scripts' text;
# bash runs it as `python3 -c "$S3_PUT_PY" BUCKET KEY CONTENT-TYPE EXPECTED-BYTES
# ENDPOINT-URL` (the last two may be empty). boto3 and its s3transfer stream
# stdin as it comes: one PutObject below the part size, else a multipart upload
# of parts sent as they fill, about ten in memory and in flight. Credentials,
# region and AWS_CA_BUNDLE come from the environment, as for the AWS CLI.
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

bucket, key, content_type, expected, endpoint = sys.argv[1:6]

# S3 takes at most 10,000 parts: parts double from 8 MiB (the CLI's default)
# until 10,000 hold EXPECTED-BYTES, an upper bound (the CLI's --expected-size).
part = 8 << 20
while expected and part * 10_000 < int(expected):
    part *= 2

s3 = boto3.client("s3", endpoint_url=endpoint or None)


def create_only(request, **_):
    # S3 refuses (412) to write over a key that exists; the bucket policy refuses
    # the host any upload without it. Added before signing, so SigV4 covers it,
    # and by hand, so boto3 older than its IfNoneMatch parameter (Debian 12's
    # 1.26) sends it too.
    request.headers["If-None-Match"] = "*"


for operation in ("PutObject", "CompleteMultipartUpload"):
    s3.meta.events.register(f"before-sign.s3.{operation}", create_only)

try:
    s3.upload_fileobj(
        sys.stdin.buffer,
        bucket,
        key,
        ExtraArgs={"ContentType": content_type},
        Config=TransferConfig(multipart_chunksize=part),
    )
except ClientError as error:
    # s3transfer has aborted a refused multipart upload: no part is left behind.
    if error.response.get("Error", {}).get("Code") == "PreconditionFailed":
        sys.exit(f"s3_put: s3://{bucket}/{key} already exists, and backups are created, never replaced; nothing was written")
    sys.exit(f"s3_put: s3://{bucket}/{key}: {error}")
except BotoCoreError as error:  # no credentials, no connection: said in one line, not a traceback
    sys.exit(f"s3_put: s3://{bucket}/{key}: {error}")
