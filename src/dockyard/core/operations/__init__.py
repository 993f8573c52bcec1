"""What an operator sets once and Dockyard then applies: lifecycle policies, repository creation
templates, registry-wide settings.

May import: core.registry (repositories and images they act on), core.identity, the policy
engine, the stores."""
