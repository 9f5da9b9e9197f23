"""Page strings in English and Vietnamese.

A plain dictionary is enough for a few dozen strings and keeps translators away from gettext tooling; a
missing Vietnamese string falls back to English rather than showing a key. The language is picked with
``?lang=vi|en`` and remembered in the session.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from central.i18n_accounts import ACCOUNT_MESSAGES
from central.i18n_fleet import FLEET_MESSAGES
from edge_agent.contract import EventType

DEFAULT_LANG = "en"
LANGUAGES = ("en", "vi")
SESSION_KEY = "lang"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app_name": "Streetwatch",
        "login": "Log in",
        "logout": "Log out",
        "username": "Username",
        "password": "Password",
        "login_failed": "Wrong username or password.",
        "review_queue": "Review queue",
        "status": "Status",
        "type": "Type",
        "all": "All",
        "pending": "Pending",
        "confirmed": "Confirmed",
        "dismissed": "Dismissed",
        "filter": "Filter",
        "camera": "Camera",
        "zone": "Zone",
        "node": "Node",
        "rule": "Rule",
        "started": "Started",
        "ended": "Ended",
        "phase": "Phase",
        "dwell": "Dwell",
        "snapshot": "Snapshot",
        "clip": "Video clip (before and after the start)",
        "crops": "Objects",
        "clean_snapshot": "Unannotated frame",
        "snapshot_pending": "snapshot pending",
        "no_events": "No events match.",
        "open": "Open",
        "event": "Event",
        "objects": "Objects",
        "measurements": "Measurements",
        "evidence": "Evidence",
        "decisions": "Decisions",
        "no_decisions": "No decisions yet.",
        "decision": "Decision",
        "reason": "Reason",
        "reason_hint": "required to dismiss",
        "confirm": "Confirm",
        "dismiss": "Dismiss",
        "escalate": "Escalate",
        "by": "by",
        "back_to_queue": "Back to the queue",
        "label": "Label",
        "score": "Score",
        "track": "Track",
        "model": "Model",
        "config_version": "Config version",
        "received": "Received",
        "not_uploaded": "not uploaded yet",
        "error_reason_required": "A dismissal needs a reason.",
        "error_reason_too_long": "The reason is too long.",
        "original_title": "Unblurred original",
        "original_help": "Faces are blurred in everything officers see. The original is shown only to supervisors "
        "and admins who give a reason; every view is recorded in the audit log.",
        "original_reason": "Reason for viewing (recorded)",
        "original_view": "View original",
        "original_restricted": "restricted original",
        "error_original_forbidden": "Your role may not view unblurred originals.",
        "error_original_reason": "Give a reason of at least 10 characters.",
        "error_bad_decision": "Unknown decision.",
        "error_bad_status": "Unknown status filter.",
        "error_bad_type": "Unknown event type.",
        "error_bad_limit": "Invalid limit.",
        "error_forbidden": "Your role may not decide on events.",
        "error_csrf": "The form expired; reload the page and try again.",
        "not_found": "Not found.",
        "language": "Language",
        "reason_placeholder": "e.g. delivery van loading, permitted here",
        "decision_confirm": "Confirmed",
        "decision_dismiss": "Dismissed",
        "decision_escalate": "Escalated",
        "latest_decision": "Latest decision",
        "decision_stored": "Decision stored",
        "view": "View",
        "keys": "Keys",
        "key_leave_reason": "leave the reason field",
        "details": "Technical details",
        "ongoing": "ongoing",
        "events_listed": "events listed",
        "phase_start": "Start",
        "phase_update": "Update",
        "phase_end": "End",
        "measure_dwell_s": "Dwell",
        "measure_displacement_px": "Displacement (px)",
        "object": "Object",
        "open_full_size": "Open the full-size image",
        # fleet (central/api/routes_nodes.py, templates/nodes.html)
        "nodes": "Nodes",
        "node_name": "Name",
        "new_enrollment_token": "New enrollment token",
        "token_shown_once": "One-time token, shown only now.",
        "expires": "Expires",
        "enrolled": "Enrolled",
        "revoked": "Revoked",
        "revoke": "Revoke",
        "no_nodes": "No node enrolled yet.",
        "config_none": "No remote config",
        "config_pending": "Config pending",
        "config_applied": "Config applied",
        "config_failed": "Config refused",
        "error_forbidden_fleet": "Your role may not manage nodes.",
    },
    "vi": {
        "app_name": "Streetwatch",
        "login": "Đăng nhập",
        "logout": "Đăng xuất",
        "username": "Tên đăng nhập",
        "password": "Mật khẩu",
        "login_failed": "Sai tên đăng nhập hoặc mật khẩu.",
        "review_queue": "Hàng chờ xem xét",
        "status": "Trạng thái",
        "type": "Loại",
        "all": "Tất cả",
        "pending": "Chờ xử lý",
        "confirmed": "Đã xác nhận",
        "dismissed": "Đã bác bỏ",
        "filter": "Lọc",
        "camera": "Camera",
        "zone": "Vùng",
        "node": "Nút",
        "rule": "Quy tắc",
        "started": "Bắt đầu",
        "ended": "Kết thúc",
        "phase": "Giai đoạn",
        "dwell": "Thời gian dừng",
        "snapshot": "Ảnh chụp",
        "clip": "Đoạn video (trước và sau thời điểm bắt đầu)",
        "crops": "Đối tượng",
        "clean_snapshot": "Khung hình gốc",
        "snapshot_pending": "ảnh đang chờ tải lên",
        "no_events": "Không có sự kiện phù hợp.",
        "open": "Mở",
        "event": "Sự kiện",
        "objects": "Đối tượng",
        "measurements": "Số đo",
        "evidence": "Bằng chứng",
        "decisions": "Quyết định",
        "no_decisions": "Chưa có quyết định.",
        "decision": "Quyết định",
        "reason": "Lý do",
        "reason_hint": "bắt buộc khi bác bỏ",
        "confirm": "Xác nhận",
        "dismiss": "Bác bỏ",
        "escalate": "Chuyển cấp trên",
        "by": "bởi",
        "back_to_queue": "Quay lại hàng chờ",
        "label": "Nhãn",
        "score": "Độ tin cậy",
        "track": "Mã theo dõi",
        "model": "Mô hình",
        "config_version": "Phiên bản cấu hình",
        "received": "Đã nhận",
        "not_uploaded": "chưa được tải lên",
        "error_reason_required": "Cần nhập lý do khi bác bỏ.",
        "error_reason_too_long": "Lý do quá dài.",
        "original_title": "Ảnh gốc chưa làm mờ",
        "original_help": "Khuôn mặt được làm mờ trong mọi hình ảnh cán bộ xem. Ảnh gốc chỉ hiển thị cho giám sát "
        "viên và quản trị viên khi nêu lý do; mỗi lần xem đều được ghi vào nhật ký kiểm tra.",
        "original_reason": "Lý do xem (được ghi lại)",
        "original_view": "Xem ảnh gốc",
        "original_restricted": "ảnh gốc hạn chế",
        "error_original_forbidden": "Vai trò của bạn không được xem ảnh gốc chưa làm mờ.",
        "error_original_reason": "Hãy nêu lý do ít nhất 10 ký tự.",
        "error_bad_decision": "Quyết định không hợp lệ.",
        "error_bad_status": "Bộ lọc trạng thái không hợp lệ.",
        "error_bad_type": "Loại sự kiện không hợp lệ.",
        "error_bad_limit": "Giới hạn không hợp lệ.",
        "error_forbidden": "Vai trò của bạn không được quyết định sự kiện.",
        "error_csrf": "Biểu mẫu đã hết hạn; hãy tải lại trang và thử lại.",
        "not_found": "Không tìm thấy.",
        "language": "Ngôn ngữ",
        "reason_placeholder": "ví dụ: xe giao hàng đang bốc dỡ, được phép",
        "decision_confirm": "Đã xác nhận",
        "decision_dismiss": "Đã bác bỏ",
        "decision_escalate": "Đã chuyển cấp trên",
        "latest_decision": "Quyết định gần nhất",
        "decision_stored": "Đã lưu quyết định",
        "view": "Xem",
        "keys": "Phím tắt",
        "key_leave_reason": "rời ô lý do",
        "details": "Thông tin kỹ thuật",
        "ongoing": "đang diễn ra",
        "events_listed": "sự kiện",
        "phase_start": "Bắt đầu",
        "phase_update": "Cập nhật",
        "phase_end": "Kết thúc",
        "measure_dwell_s": "Thời gian dừng",
        "measure_displacement_px": "Độ dịch chuyển (px)",
        "object": "Đối tượng",
        "open_full_size": "Mở ảnh kích thước đầy đủ",
        "nodes": "Thiết bị",
        "node_name": "Tên",
        "new_enrollment_token": "Tạo mã đăng ký mới",
        "token_shown_once": "Mã dùng một lần, chỉ hiển thị lúc này.",
        "expires": "Hết hạn",
        "enrolled": "Đã đăng ký",
        "revoked": "Đã thu hồi",
        "revoke": "Thu hồi",
        "no_nodes": "Chưa có thiết bị nào được đăng ký.",
        "config_none": "Chưa có cấu hình từ xa",
        "config_pending": "Cấu hình đang chờ",
        "config_applied": "Đã áp dụng cấu hình",
        "config_failed": "Cấu hình bị từ chối",
        "error_forbidden_fleet": "Vai trò của bạn không được quản lý thiết bị.",
        "illegal_stopping": "Dừng đỗ sai quy định",
        "wrong_way": "Đi ngược chiều",
        "red_light": "Vượt đèn đỏ",
        "sidewalk_vehicle": "Xe trên vỉa hè",
        "speeding": "Chạy quá tốc độ",
        "illegal_turn": "Rẽ sai quy định",
        "motorbike_overload": "Xe máy chở quá số người",
        "encroachment": "Lấn chiếm vỉa hè",
        "gathering": "Tụ tập đông người",
    },
}

# Account, session and audit pages keep their strings in their own module (central/i18n_accounts.py).
for _lang, _strings in ACCOUNT_MESSAGES.items():
    for _key, _text in _strings.items():
        MESSAGES[_lang].setdefault(_key, _text)
# The technician pages' strings live in their own module.
for _lang, _strings in FLEET_MESSAGES.items():
    MESSAGES[_lang].update(_strings)

# English labels of event types are derived from their ids (illegal_stopping -> "Illegal stopping").
for _event_type in EventType:
    MESSAGES["en"].setdefault(_event_type.value, _event_type.value.replace("_", " ").capitalize())


def translate(lang: str, key: str) -> str:
    """The string for ``key`` in ``lang``, falling back to English, then to the key itself."""
    return MESSAGES.get(lang, {}).get(key) or MESSAGES[DEFAULT_LANG].get(key) or key


def choose_language(session: MutableMapping[str, Any], requested: str | None) -> str:
    """Apply a ``?lang=`` request (remembered in the session) and return the language to render."""
    if requested in LANGUAGES:
        session[SESSION_KEY] = requested
        return requested
    current = session.get(SESSION_KEY)
    return current if current in LANGUAGES else DEFAULT_LANG


def translator(lang: str) -> Callable[[str], str]:
    """A one-argument ``t(key)`` for templates."""
    return lambda key: translate(lang, key)


# The officers' workspace (issue 9): queue, claims, cases, statistics, cameras; human names for raw ids.
from central.i18n_review import REVIEW_MESSAGES  # noqa: E402

for _lang, _messages in REVIEW_MESSAGES.items():
    MESSAGES[_lang].update(_messages)
