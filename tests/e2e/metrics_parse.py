"""Reads a Tollgate /metrics page with the Prometheus client library's own
text-format parser and prints every sample as JSON, so the Rust test
asserts on what Prometheus would ingest, not on a string search.

usage: metrics_parse.py URL [KEY]"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

url = sys.argv[1]
request = urllib.request.Request(url)
if len(sys.argv) > 2:
    request.add_header("Authorization", "Bearer " + sys.argv[2])
with urllib.request.urlopen(request) as response:
    content_type = response.headers.get("content-type")
    text = response.read().decode()

families = {}
samples = []
for family in text_string_to_metric_families(text):
    families[family.name] = {"type": family.type, "help": family.documentation}
    for sample in family.samples:
        samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
print(json.dumps({"content_type": content_type, "families": families, "samples": samples}))
