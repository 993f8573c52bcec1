"""The front doors: each parses its wire format, authenticates, calls the core and renders the
answer. registry.py (OCI Distribution), ecr.py (the ECR API, AWS JSON 1.1), iam.py (IAM and STS,
AWS Query), cloudtrail.py (LookupEvents), console/ (HTML). Shared by the doors: aws_auth.py and
aws_json.py/aws_query.py (the AWS wire formats), bodies.py (body limits), ranges.py (Range),
throttle.py (request admission).

A door imports the core and dockyard.auth; the core never imports a door."""
