"""Provider sessions held by useapi accounts: logging in against the sandbox's own emulations
(in-process, through the shared state), telling an expired session, and Riffusion's renewal
with its refresh token, which useapi does by itself.

Every session is a dict with at least `token`, `exp` and `iat` (epoch seconds), plus what the
provider's login gave (`jti` of minted JWTs, Riffusion's `refresh_token`, …).
"""

from __future__ import annotations

from typing import Any

from ..common import iso
from ..model import User
from ..state import WRONG_LOGIN, Reject, Sandbox
from .specs import RENEW_AT
from .state import Account, UseapiState

KLING_LOGIN_FAILED = "Account does not exist or password is incorrect"


def _minted(sb: Sandbox, user: User, **extra: Any) -> dict[str, Any]:
    token, claims = sb.mint(user, **extra)
    return {"token": token, "exp": claims["exp"], "iat": claims["iat"], "jti": claims["jti"]}


def riffusion_session(sb: Sandbox, user: User) -> dict[str, Any]:
    session = _minted(sb, user, role="authenticated", aud="authenticated")
    session["refresh_token"] = sb.issue_refresh(user)
    session["expires_in"] = int(session["exp"] - session["iat"])
    return session


def login_password(sb: Sandbox, provider: str, email: str, password: str) -> tuple[User, dict[str, Any]]:
    if provider == "kling":
        try:
            user = sb.login_password(provider, email, password)
        except Reject as exc:  # useapi answers a failed Kling login with a 400
            raise Reject(400, KLING_LOGIN_FAILED if exc.message == WRONG_LOGIN else exc.message) from None
        return user, {**_minted(sb, user, userId=user.number), "userId": user.number}
    user = sb.login_password(provider, email, password)  # 401 wrong login / suspended
    if provider == "pixverse":
        return user, {**_minted(sb, user, AccountId=user.number), "AccountId": user.number, "Username": user.id}
    return user, {**_minted(sb, user, id=user.number), "id": user.number}


def login_minimax(sb: Sandbox, account: str, token: str) -> tuple[User, dict[str, Any]]:
    """Validate a pasted MiniMax token against the sandbox's MiniMax (useapi cannot refresh it)."""
    user = sb.by_token.get(token)
    if user is None:
        raise Reject(401, "MiniMax token is not valid")
    if user.token_exp <= sb.clock():
        raise Reject(401, "MiniMax token has expired, paste a fresh one")
    user = sb.authenticate("minimax", token)  # suspended accounts are refused here
    if user.id != account:
        raise Reject(400, f"Token belongs to account {user.id}, not {account}")
    return user, {"token": token, "exp": user.token_exp, "iat": user.registered_at,
                  "user": {"id": user.id, "deviceID": str(user.number), "name": f"sandbox-{user.id}",
                           "isAnonymous": False}}


def login_riffusion(sb: Sandbox, cookie: str) -> tuple[User, dict[str, Any]]:
    user = sb.login_cookie(cookie)  # 401 invalid cookie / suspended
    return user, riffusion_session(sb, user)


def expired(sb: Sandbox, account: Account, now: float) -> bool:
    """The stored provider session can no longer be used (past its expiry, or revoked)."""
    user = account.user
    if account.spec.provider == "minimax":
        return sb.by_token.get(account.session["token"]) is not user or user.token_exp <= now
    return account.session["exp"] <= now or account.session.get("jti") in user.revoked


def touch(sb: Sandbox, account: Account) -> None:
    """Riffusion: renew the session with its refresh token once less than 20 % of it is left;
    when that fails, flag the account (it then needs a manual update, a re-POST)."""
    if account.spec.provider != "riffusion" or account.error:
        return
    now = sb.clock()
    session = account.session
    if session["exp"] - now >= RENEW_AT * (session["exp"] - session["iat"]):
        return
    try:
        user = sb.refresh(session["refresh_token"])
    except Reject:
        account.error = f"Session refresh failed {iso(now)}, manual update required"
        return
    account.user = user
    account.session = riffusion_session(sb, user)


def provider_user(ustate: UseapiState, account: Account) -> User:
    """The provider user a create/status call acts as; 401 (counted) when the session expired."""
    sb = ustate.sb
    touch(sb, account)
    if expired(sb, account, sb.clock()):
        ustate.counts["expired_token_requests"] += 1
        raise Reject(401, f"{account.spec.label} session expired, update the account")
    return sb.authenticate(account.spec.provider, account.session["token"])  # 401 when suspended
