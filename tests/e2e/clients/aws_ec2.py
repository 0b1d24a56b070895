"""EC2 calls with boto3 against a local AWS-compatible endpoint; proxy and CA come from the
environment (`shield env`). Usage: aws_ec2.py ENDPOINT run | describe ID | terminate ID"""

import json
import sys

import boto3
from botocore.config import Config

endpoint, command, *ids = sys.argv[1:]
ec2 = boto3.client(
    "ec2", region_name="us-east-1", endpoint_url=endpoint,
    aws_access_key_id="AKIAFAKEFORTESTS0000", aws_secret_access_key="fake-secret-for-tests",
    # a held call waits for a reviewer: a long read timeout, and no retry that would send it twice
    config=Config(read_timeout=60, retries={"max_attempts": 0}),
)
if command == "run":
    r = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="t3.micro", MinCount=1, MaxCount=1)
    print(json.dumps({"id": r["Instances"][0]["InstanceId"]}))
elif command == "describe":
    r = ec2.describe_instances(InstanceIds=ids)
    print(json.dumps({"state": r["Reservations"][0]["Instances"][0]["State"]["Name"]}))
elif command == "terminate":
    r = ec2.terminate_instances(InstanceIds=ids)
    print(json.dumps({"state": r["TerminatingInstances"][0]["CurrentState"]["Name"]}))
