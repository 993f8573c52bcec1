"""Managed signing: AWS Signer signing profiles, ECR's signing configuration, Notary Project signatures."""
