# s3_put's uploader (host/common.sh): stdin to s3://BUCKET/KEY, created, never
# replaced. shared/host/shell.ts renders it into the uploading scripts' text;
# bash runs it as `python3 -c "$S3_PUT_PY" BUCKET KEY CONTENT-TYPE EXPECTED-BYTES
# ENDPOINT-URL [STATUS-FILE...]` (EXPECTED-BYTES and ENDPOINT-URL may be empty;
# each STATUS-FILE must say 0 at the end of stdin: Upstream below). boto3 and
# its s3transfer stream stdin as it comes: one PutObject below the part size,
# else a multipart upload of parts sent as they fill, about ten in memory and
# in flight. Credentials, region and AWS_CA_BUNDLE come from the environment, as
# for the AWS CLI.
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

bucket, key, content_type, expected, endpoint = sys.argv[1:6]
statuses = sys.argv[6:]

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


class UpstreamFailed(Exception):
    pass


class Upstream:
    """stdin, whose end is an error unless every stage that fed it succeeded.

    Each stage of the pipeline upstream (host/common.sh `stage`) writes its exit
    status to a STATUS-FILE as it ends, before its output closes, so the files
    are complete when stdin ends. Raised at the end of the input, the error
    stops s3transfer before the PutObject, or before CompleteMultipartUpload,
    and s3transfer then aborts the multipart upload (its failure clean-up): a
    dump killed mid-stream leaves no object, truncated or empty, and no parts.
    """

    def __init__(self, stream, status_files):
        self.stream = stream
        self.status_files = status_files

    def read(self, size=-1):
        data = self.stream.read(size)
        # A buffered read returns fewer bytes than asked only at the end.
        if size is None or size < 0 or len(data) < size:
            self.check()
        return data

    def check(self):
        failed = []
        for path in self.status_files:
            try:
                with open(path) as file:
                    status = file.read().strip()
            except OSError:
                status = "none recorded"
            if status != "0":
                failed.append(f"{path.rsplit('/', 1)[-1].removesuffix('.status')} (status {status})")
        if failed:
            raise UpstreamFailed(", ".join(failed))


try:
    s3.upload_fileobj(
        Upstream(sys.stdin.buffer, statuses),
        bucket,
        key,
        ExtraArgs={"ContentType": content_type},
        Config=TransferConfig(multipart_chunksize=part),
    )
except UpstreamFailed as error:
    sys.exit(f"s3_put: s3://{bucket}/{key} was not created: a stage feeding it failed: {error}; nothing was written")
except ClientError as error:
    # s3transfer has aborted a refused multipart upload: no part is left behind.
    if error.response.get("Error", {}).get("Code") == "PreconditionFailed":
        sys.exit(f"s3_put: s3://{bucket}/{key} already exists, and backups are created, never replaced; nothing was written")
    sys.exit(f"s3_put: s3://{bucket}/{key}: {error}")
except BotoCoreError as error:  # no credentials, no connection: said in one line, not a traceback
    sys.exit(f"s3_put: s3://{bucket}/{key}: {error}")
