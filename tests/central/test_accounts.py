"""Accounts through HTTP on SQLite and PostgreSQL: server-side sessions that logout, a password change and
disabling end at once; login throttling per account and per address; the password policy; admin management.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central import users
from central.api.deps import SID_COOKIE
from central.db.models import AuditRow, LoginSessionRow, WardRow
from central.db.session import Database
from central.passwords import check_password
from central.settings import Settings
from tests.central.conftest import ADMIN_PASSWORD, FakeClock, login
from tests.central.factories import T0

OFFICER_PASSWORD = "green-mango-bicycle-41"


def add_ward(db: Database, ward_id: str, name: str) -> None:
    with db.session() as session:
        session.add(WardRow(ward_id=ward_id, name=name, created_at=T0))


def add_officer(db: Database, username: str = "lan", wards: tuple[str, ...] = ()) -> None:
    with db.session() as session:
        users.create_user(
            session,
            username=username,
            role="officer",
            password=OFFICER_PASSWORD,
            wards=list(wards),
            actor="admin",
            now=T0,
            must_change_password=False,
        )


def new_client(client: TestClient) -> TestClient:
    """Another browser: same app, its own cookie jar."""
    return TestClient(client.app)


def cookie_of(client: TestClient) -> str:
    value = client.cookies.get(SID_COOKIE)
    assert value, "no session cookie"
    return value


def replay(client: TestClient, sid: str) -> int:
    """What a saved copy of a session cookie gets from /api/v1/me (a fresh client, only that cookie)."""
    thief = new_client(client)
    thief.cookies.set(SID_COOKIE, sid)
    return thief.get("/api/v1/me").status_code


def audit_actions(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(AuditRow.action).order_by(AuditRow.id)))


# ---------------------------------------------------------------- sessions


def test_the_cookie_holds_a_random_token_and_the_database_only_its_hash(
    client: TestClient, db: Database
) -> None:
    login(client)
    sid = cookie_of(client)
    with db.session() as session:
        row = session.scalars(select(LoginSessionRow)).one()
    assert len(sid) >= 40 and sid not in row.token_hash and len(row.token_hash) == 64
    assert row.username == "admin" and row.ended_at is None


def test_logout_ends_the_session_on_the_server(client: TestClient, db: Database) -> None:
    add_officer(db)
    login(client, "lan", OFFICER_PASSWORD)
    saved = cookie_of(client)
    other = new_client(client)
    login(other, "lan", OFFICER_PASSWORD)
    assert replay(client, saved) == 200
    assert client.post("/api/v1/logout").status_code == 204
    assert replay(client, saved) == 401  # the saved cookie is dead at once, not in 12 h
    assert other.get("/api/v1/me").status_code == 200  # the other device is untouched
    assert "session.end" in audit_actions(db)


def test_page_logout_ends_the_session(client: TestClient, db: Database) -> None:
    add_officer(db)
    page = client.get("/login")
    assert page.status_code == 200
    response = client.post(
        "/login",
        data={"username": "lan", "password": OFFICER_PASSWORD, "next": "/review"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    saved = cookie_of(client)
    sessions_page = client.get("/account/sessions")
    token = sessions_page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert replay(client, saved) == 401


def test_password_change_ends_every_other_session(client: TestClient, db: Database) -> None:
    add_officer(db)
    phone, laptop = new_client(client), new_client(client)
    login(phone, "lan", OFFICER_PASSWORD)
    login(laptop, "lan", OFFICER_PASSWORD)
    phone_sid = cookie_of(phone)
    changed = laptop.post(
        "/api/v1/account/password",
        json={"current_password": OFFICER_PASSWORD, "new_password": "purple-river-lantern-7"},
    )
    assert changed.status_code == 204, changed.text
    assert replay(client, phone_sid) == 401
    assert laptop.get("/api/v1/me").status_code == 200  # the device that changed it stays in
    old = new_client(client).post("/api/v1/login", json={"username": "lan", "password": OFFICER_PASSWORD})
    assert old.status_code == 401


def test_disabling_ends_all_sessions_and_blocks_login(client: TestClient, db: Database) -> None:
    add_officer(db)
    officer = new_client(client)
    login(officer, "lan", OFFICER_PASSWORD)
    saved = cookie_of(officer)
    login(client)  # admin
    response = client.patch("/api/v1/users/lan", json={"disabled": True})
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert replay(client, saved) == 401
    again = new_client(client).post("/api/v1/login", json={"username": "lan", "password": OFFICER_PASSWORD})
    assert (
        again.status_code == 401
        and again.json()["detail"] == "this account is disabled; ask an administrator"
    )
    wrong = new_client(client).post("/api/v1/login", json={"username": "lan", "password": "not-the-password"})
    assert wrong.json()["detail"] == "wrong username or password"  # only the right password learns "disabled"
    page = new_client(client).post("/login?lang=vi", data={"username": "lan", "password": OFFICER_PASSWORD})
    assert "Tài khoản này đã bị vô hiệu hoá" in page.text
    assert {"user.disable", "session.end_all", "login.disabled"} <= set(audit_actions(db))


def test_a_user_lists_and_ends_their_own_sessions(client: TestClient, db: Database) -> None:
    add_officer(db)
    add_officer(db, "minh")
    phone, laptop, someone_else = new_client(client), new_client(client), new_client(client)
    login(phone, "lan", OFFICER_PASSWORD)
    login(laptop, "lan", OFFICER_PASSWORD)
    login(someone_else, "minh", OFFICER_PASSWORD)
    listed = laptop.get("/api/v1/account/sessions").json()
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    phone_id = next(s["id"] for s in listed if not s["current"])
    minh_id = someone_else.get("/api/v1/account/sessions").json()[0]["id"]
    assert laptop.delete(f"/api/v1/account/sessions/{minh_id}").status_code == 404  # not theirs
    assert laptop.delete(f"/api/v1/account/sessions/{phone_id}").status_code == 204
    assert phone.get("/api/v1/me").status_code == 401
    assert someone_else.get("/api/v1/me").status_code == 200
    page = laptop.get("/account/sessions")
    assert page.status_code == 200 and page.text.count("data-session-id=") == 1


def test_idle_and_absolute_expiry(make_settings: Callable[..., Settings], clock: FakeClock) -> None:
    from central.app import create_app

    app = create_app(make_settings(session_idle_s=600, session_max_age_s=3600), clock=clock)
    with TestClient(app) as client:
        login(client)
        clock.advance(599)
        assert client.get("/api/v1/me").status_code == 200
        clock.advance(599)
        assert client.get("/api/v1/me").status_code == 200  # each use restarts the idle clock
        clock.advance(601)
        assert client.get("/api/v1/me").status_code == 401
        login(client)
        for _ in range(8):
            clock.advance(500)
            client.get("/api/v1/me")
        assert (
            client.get("/api/v1/me").status_code == 401
        )  # 4,000 s after login, used every 500 s: past the 1 h cap


def test_json_writes_need_the_csrf_header(client: TestClient, db: Database) -> None:
    login(client)
    token = client.headers.pop("X-CSRF-Token")
    body = {"username": "hoa", "role": "officer", "password": "quiet-harbor-lamp-93"}
    assert client.post("/api/v1/users", json=body).status_code == 403
    assert client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    assert client.post("/api/v1/users", json=body, headers={"X-CSRF-Token": token}).status_code == 201
    assert client.get("/api/v1/session").json()["csrf_token"] == token


def test_temporary_password_must_be_changed_first(client: TestClient, db: Database) -> None:
    login(client)
    body = {"username": "hoa", "role": "officer", "password": "quiet-harbor-lamp-93"}
    assert client.post("/api/v1/users", json=body).status_code == 201
    hoa = new_client(client)
    info = hoa.post("/api/v1/login", json={"username": "hoa", "password": body["password"]}).json()
    assert info["must_change_password"] is True
    hoa.headers["X-CSRF-Token"] = info["csrf_token"]
    assert hoa.get("/api/v1/dead-letters").status_code == 403
    assert hoa.get("/review", follow_redirects=False).headers["location"] == "/account/password"
    changed = hoa.post(
        "/api/v1/account/password",
        json={"current_password": body["password"], "new_password": "tall-orange-kettle-58"},
    )
    assert changed.status_code == 204
    assert hoa.get("/review", follow_redirects=False).status_code == 200


# ---------------------------------------------------------------- throttling


def test_100_wrong_passwords_then_the_right_one_is_refused(client: TestClient, db: Database) -> None:
    codes = [
        client.post("/api/v1/login", json={"username": "admin", "password": f"guess-{i}"}).status_code
        for i in range(100)
    ]
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
    right = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert right.status_code == 429
    assert right.json()["detail"].startswith(
        "Too many failed logins for this account. Try again in 15 minute"
    )
    assert int(right.headers["Retry-After"]) > 800
    actions = audit_actions(db)
    assert actions.count("login.failed") == 10 and actions.count("login.throttled") == 91
    assert "login" not in actions


def test_throttled_page_says_so_in_vietnamese(client: TestClient) -> None:
    client.get("/login?lang=vi")
    for i in range(10):
        client.post("/login", data={"username": "admin", "password": f"guess-{i}"})
    page = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert page.status_code == 429
    assert "Đăng nhập sai quá nhiều lần với tài khoản này. Hãy thử lại sau 15 phút." in page.text


def test_per_address_limit_covers_many_accounts(client: TestClient) -> None:
    codes = [
        client.post("/api/v1/login", json={"username": f"user{i}", "password": "x"}).status_code
        for i in range(51)
    ]
    assert codes[:50] == [401] * 50 and codes[50] == 429
    response = client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 429 and "from this address" in response.json()["detail"]


def test_a_success_clears_the_account_count(client: TestClient) -> None:
    for _ in range(2):
        for i in range(9):
            assert (
                client.post("/api/v1/login", json={"username": "admin", "password": f"g{i}"}).status_code
                == 401
            )
        assert (
            client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
            == 200
        )


def test_an_admin_reset_lifts_the_lock_out(client: TestClient, db: Database) -> None:
    add_officer(db)
    officer = new_client(client)
    for i in range(10):
        officer.post("/api/v1/login", json={"username": "lan", "password": f"forgot-{i}"})
    assert (
        officer.post("/api/v1/login", json={"username": "lan", "password": OFFICER_PASSWORD}).status_code
        == 429
    )
    admin = new_client(client)
    login(admin)
    assert (
        admin.post("/api/v1/users/lan/password", json={"password": "windy-copper-garden-12"}).status_code
        == 204
    )
    fresh = officer.post("/api/v1/login", json={"username": "lan", "password": "windy-copper-garden-12"})
    assert fresh.status_code == 200 and fresh.json()["must_change_password"] is True


# ---------------------------------------------------------------- password policy


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("aaaaaaaa", "too_short"),
        ("aaaaaaaaaaaa", "weak"),
        ("password123", "weak"),
        ("1234567890", "weak"),
        ("qwertyuiop", "weak"),
        ("lan1234567", "weak"),  # the username plus digits
        ("streetwatch1", "weak"),  # the product's name
        ("green-mango-bicycle-41", None),
        ("Ngã tư Hàng Xanh 2024!", None),
    ],
)
def test_password_policy(password: str, code: str | None) -> None:
    problem = check_password(password, username="lan")
    assert (problem.code if problem else None) == code


def test_weak_password_refused_with_a_clear_message(client: TestClient) -> None:
    login(client)
    response = client.post(
        "/api/v1/users", json={"username": "hoa", "role": "officer", "password": "aaaaaaaaaaaa"}
    )
    assert response.status_code == 422
    assert "too easy to guess (strength 0 of 4, at least 3 needed)" in response.json()["detail"]
    vi = check_password("aaaaaaaaaaaa")
    assert vi is not None and "Mật khẩu quá dễ đoán (độ mạnh 0/4, cần ít nhất 3)" in vi.message("vi")


# ---------------------------------------------------------------- administration


def test_admin_creates_an_officer_in_two_wards(client: TestClient, db: Database) -> None:
    add_ward(db, "p-ben-nghe", "Phường Bến Nghé")
    add_ward(db, "p-da-kao", "Phường Đa Kao")
    login(client)
    body = {
        "username": "lan",
        "role": "officer",
        "password": OFFICER_PASSWORD,
        "wards": ["p-da-kao", "p-ben-nghe"],
    }
    created = client.post("/api/v1/users", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["wards"] == ["p-ben-nghe", "p-da-kao"]
    assert client.post("/api/v1/users", json=body).status_code == 409
    unknown = client.post("/api/v1/users", json={**body, "username": "minh", "wards": ["p-nowhere"]})
    assert unknown.status_code == 422 and "p-nowhere" in unknown.json()["detail"]
    assert client.post("/api/v1/users", json={**body, "username": "Bad Name"}).status_code == 422
    assert client.post("/api/v1/users", json={**body, "username": "x1", "role": "boss"}).status_code == 422
    with db.session() as session:
        assert users.user_wards(session, "lan") == {"p-ben-nghe", "p-da-kao"}
        row = session.scalars(select(AuditRow).where(AuditRow.action == "user.create")).one()
        assert (row.username, row.target, row.detail["wards"]) == (
            "admin",
            "user:lan",
            ["p-ben-nghe", "p-da-kao"],
        )


def test_only_admins_manage_accounts(client: TestClient, db: Database) -> None:
    add_officer(db)
    login(client, "lan", OFFICER_PASSWORD)
    assert client.get("/api/v1/users").status_code == 403
    assert client.get("/admin/users").status_code == 403
    body = {"username": "evil", "role": "admin", "password": "quiet-harbor-lamp-93"}
    assert client.post("/api/v1/users", json=body).status_code == 403


def test_admin_cannot_disable_themselves(client: TestClient) -> None:
    login(client)
    response = client.patch("/api/v1/users/admin", json={"disabled": True})
    assert response.status_code == 422 and "your own account" in response.json()["detail"]


def test_reset_password_ends_sessions_and_forces_a_change(client: TestClient, db: Database) -> None:
    add_officer(db)
    officer = new_client(client)
    login(officer, "lan", OFFICER_PASSWORD)
    login(client)
    assert client.post("/api/v1/users/lan/password", json={"password": "short"}).status_code == 422
    assert (
        client.post("/api/v1/users/lan/password", json={"password": "windy-copper-garden-12"}).status_code
        == 204
    )
    assert officer.get("/api/v1/me").status_code == 401
    info = new_client(client).post(
        "/api/v1/login", json={"username": "lan", "password": "windy-copper-garden-12"}
    )
    assert info.json()["must_change_password"] is True


# ---------------------------------------------------------------- the admin page's forms


def page_csrf(client: TestClient, path: str = "/admin/users") -> str:
    return client.get(path).text.split('name="csrf_token" value="')[1].split('"')[0]


def test_admin_page_forms(client: TestClient, db: Database) -> None:
    add_ward(db, "p-ben-nghe", "Phường Bến Nghé")
    add_ward(db, "p-da-kao", "Phường Đa Kao")
    add_officer(db, wards=("p-ben-nghe",))
    officer = new_client(client)
    login(officer, "lan", OFFICER_PASSWORD)
    login(client)
    token = page_csrf(client)

    def act(**form: object) -> int:
        return client.post(
            "/admin/users", data={"csrf_token": token, **form}, follow_redirects=False
        ).status_code

    assert act(action="wards", username="lan", wards=["p-ben-nghe", "p-da-kao"]) == 303
    assert act(action="role", username="lan", role="supervisor") == 303
    assert officer.get("/api/v1/me").status_code == 401  # a role change ends the sessions
    assert act(action="disable", username="lan") == 303
    assert act(action="enable", username="lan") == 303
    assert act(action="reset", username="lan", password="aaaaaaaaaaaa") == 422
    assert act(action="reset", username="lan", password="windy-copper-garden-12") == 303
    assert act(action="disable", username="admin") == 422
    assert act(action="disable", username="ghost") == 404
    assert act(action="explode", username="lan") == 422
    forged = client.post(
        "/admin/users", data={"csrf_token": "forged", "action": "disable", "username": "lan"}
    )
    assert forged.status_code == 403
    accounts = {a["username"]: a for a in client.get("/api/v1/users").json()}
    assert accounts["lan"]["wards"] == ["p-ben-nghe", "p-da-kao"]
    assert (accounts["lan"]["role"], accounts["lan"]["disabled"]) == ("supervisor", False)
    assert accounts["lan"]["must_change_password"] is True
    page = client.get("/admin/users?lang=vi").text
    assert "Tài khoản" in page and "Chỉ huy" in page
    assert [a for a in audit_actions(db) if a.startswith("user.")] == [
        "user.bootstrap",
        "user.create",
        "user.wards",
        "user.role",
        "user.disable",
        "user.enable",
        "user.password_reset",
    ]  # refused actions left no row


def test_restart_re_enables_a_disabled_bootstrap_admin(
    make_settings: Callable[..., Settings], clock: FakeClock
) -> None:
    """The environment stays the way back in: a disabled (or demoted) bootstrap admin is restored at start."""
    from central.app import create_app

    settings = make_settings()
    with TestClient(create_app(settings, clock=clock)) as client:
        db = client.app.state.central.db  # type: ignore[attr-defined]
        with db.session() as session:
            users.create_user(
                session,
                username="root2",
                role="admin",
                password=OFFICER_PASSWORD,
                wards=[],
                actor=None,
                now=T0,
                must_change_password=False,
            )
        other = new_client(client)
        login(other, "root2", OFFICER_PASSWORD)
        assert other.patch("/api/v1/users/admin", json={"disabled": True}).status_code == 200
        assert (
            client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
            == 401
        )
    with TestClient(create_app(settings, clock=clock)) as client:
        assert (
            client.post("/api/v1/login", json={"username": "admin", "password": ADMIN_PASSWORD}).status_code
            == 200
        )


def test_sessions_page_ends_another_and_then_this_session(client: TestClient, db: Database) -> None:
    add_officer(db)
    phone = new_client(client)
    login(phone, "lan", OFFICER_PASSWORD)
    login(client, "lan", OFFICER_PASSWORD)
    listed = {s["current"]: s["id"] for s in client.get("/api/v1/account/sessions").json()}
    token = page_csrf(client, "/account/sessions")
    done = client.post(
        f"/account/sessions/{listed[False]}/end", data={"csrf_token": token}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, "/account/sessions")
    assert phone.get("/api/v1/me").status_code == 401
    saved = cookie_of(client)
    done = client.post(
        f"/account/sessions/{listed[True]}/end", data={"csrf_token": token}, follow_redirects=False
    )
    assert (done.status_code, done.headers["location"]) == (303, "/login")
    assert replay(client, saved) == 401
    with db.session() as session:
        reasons = session.scalars(select(LoginSessionRow.end_reason).order_by(LoginSessionRow.id)).all()
    assert reasons == ["ended_by_user", "ended_by_user"]
