from app import create_app
from web.config import DEFAULT_CONFIG


def test_settings_come_from_defaults_then_environment_then_test_config(monkeypatch):
    monkeypatch.setenv("DIGITS_MAX_CONTENT_LENGTH", "2048")
    monkeypatch.setenv("DIGITS_DEVICE", "cpu")
    monkeypatch.setenv("DIGITS_MAX_IMAGE_PIXELS", "4000")
    app = create_app({"MAX_IMAGE_PIXELS": 5000})
    assert app.config["MAX_CONTENT_LENGTH"] == 2048
    assert app.config["DEVICE"] == "cpu"
    assert app.config["MAX_IMAGE_PIXELS"] == 5000
    assert app.config["BACKEND"] == DEFAULT_CONFIG["BACKEND"]


def test_text_settings_stay_text_when_they_look_like_numbers(monkeypatch):
    monkeypatch.setenv("DIGITS_ADMIN_KEY", "0123")
    monkeypatch.setenv("DIGITS_STATE_DIR", "")
    app = create_app({"DEVICE": "cpu"})
    assert app.config["ADMIN_KEY"] == "0123"
    assert app.config["STATE_DIR"] == ""
