"""Who may do what on the platform server: API tokens and their roles."""

from modelcycle.access.tokens import ROLES, TokenService, role_allows

__all__ = ["ROLES", "TokenService", "role_allows"]
