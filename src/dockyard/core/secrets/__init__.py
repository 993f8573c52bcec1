"""AWS Secrets Manager: secrets, their versions and staging labels, values sealed at rest.

May import: core.identity (who calls, and may they), the policy engine and the stores."""
