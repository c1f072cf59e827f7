"""LPIPS never touches the network: the offline modes of `ldm_nb.losses.make_lpips`, with every network call blocked."""
from __future__ import annotations
import socket, warnings
import pytest, torch, torchvision
from ldm_nb.losses import LPIPS_TRUNK_ENV, LPIPSWithDiscriminator, lpips_heads_path, make_lpips, trunk_weights_path


class NetworkAttempt(AssertionError):
    pass


@pytest.fixture
def offline(monkeypatch, tmp_path):
    "An empty torch hub dir, the env flag unset, and any DNS lookup, connect or torch.hub download raising."
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise NetworkAttempt(f"network access attempted: {args[:2]!r}")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))         # what torch.hub.set_dir does, undone afterwards
    monkeypatch.delenv(LPIPS_TRUNK_ENV, raising=False)
    yield hub, attempts
    assert attempts == [], f"something tried the network: {attempts}"


def _fake_vgg16_checkpoint(path, value=0.01):
    "A stand-in for vgg16-397923af.pth with every tensor = `value`, stored as stride-0 views (a few kB, not 528 MB)."
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16().state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: torch.full((1,), value).expand(s) for k, s in shapes.items()}, path)


def test_filename_is_torchvisions():
    assert trunk_weights_path("vgg").name == "vgg16-397923af.pth"
    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert url.endswith("/" + trunk_weights_path("vgg").name)
    assert lpips_heads_path("vgg").is_file() and lpips_heads_path("alex").is_file()


def test_missing_weights_raise_before_any_download(offline):
    hub, _ = offline
    for kwargs in ({}, {"random_trunk": False}):
        with pytest.raises(RuntimeError) as e:
            make_lpips("vgg", **kwargs)
        msg = str(e.value)
        assert LPIPS_TRUNK_ENV in msg and "random_trunk=True" in msg and "vgg16-397923af.pth" in msg
    with pytest.raises(RuntimeError, match="lpips_random_trunk=True"):
        LPIPSWithDiscriminator(disc_start=0)
    assert not hub.exists() or not any(hub.rglob("*"))            # nothing was written to the cache either


def test_random_trunk_offline(offline):
    hub, _ = offline
    with pytest.warns(UserWarning, match="not calibrated LPIPS"):
        lp = make_lpips("vgg", random_trunk=True)
    heads = torch.load(lpips_heads_path("vgg"), map_location="cpu")
    for k, v in heads.items():
        assert torch.equal(lp.state_dict()[k], v)                  # the calibrated heads from the wheel
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    assert torch.equal(lp(x, x), torch.zeros(2, 1, 1, 1))
    assert not hub.exists() or not any(hub.rglob("*"))


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("TRUE", True), ("0", False), ("", False)])
def test_env_flag(offline, monkeypatch, value, expected):
    monkeypatch.setenv(LPIPS_TRUNK_ENV, value)
    if expected:
        with pytest.warns(UserWarning, match="not calibrated LPIPS"):
            assert make_lpips("vgg").random_trunk
    else:
        with pytest.raises(RuntimeError, match=LPIPS_TRUNK_ENV):
            make_lpips("vgg")


def test_env_flag_bad_value_and_explicit_false_wins(offline, monkeypatch):
    monkeypatch.setenv(LPIPS_TRUNK_ENV, "maybe")
    with pytest.raises(ValueError, match=f"environment variable {LPIPS_TRUNK_ENV} must be"):
        make_lpips("vgg")
    monkeypatch.setenv(LPIPS_TRUNK_ENV, "1")
    with pytest.raises(RuntimeError, match="vgg16-397923af.pth"):
        make_lpips("vgg", random_trunk=False)


def test_pretrained_trunk_comes_from_the_hub_cache(offline):
    "With the trunk file in the cache, the real loading path runs (through torchvision) and reads exactly that file."
    hub, _ = offline
    path = trunk_weights_path("vgg")
    assert str(path).startswith(str(hub))
    _fake_vgg16_checkpoint(path, value=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)                # no random-trunk warning, no deprecation noise
        lp = make_lpips("vgg", random_trunk=None)
    assert lp.random_trunk is False
    trunk = {k: v for k, v in lp.state_dict().items() if k.startswith("net.")}
    assert len(trunk) == 26 and all(torch.all(v == 0.01) for v in trunk.values())
    assert not any(p.requires_grad for p in lp.parameters())


def test_the_fixture_sees_a_download(offline):
    "Control: plain `lpips` without the trunk file does try to download, and the fixture catches it."
    import lpips
    _, attempts = offline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(NetworkAttempt):
            lpips.LPIPS(net="vgg", pnet_rand=False, verbose=False)
    assert "vgg16-397923af.pth" in attempts[0][0]
    attempts.clear()
