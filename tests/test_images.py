"""Images read when indexed (``hsep_utils.images``): the same pixels as reading them all at once,
nothing decoded before it is needed, and bounded memory whichever way they are held."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from hsep_utils.datasets import load_images
from hsep_utils.images import Images, as_images


def _folder(tmp_path, n=7, size=8):
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        names.append(f"c/{i}.png")
        (tmp_path / "c").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp_path / names[-1])
    return names


@pytest.mark.parametrize("hold", [True, False])
def test_images_index_like_the_tensor_they_stand_for(tmp_path, hold):
    names = _folder(tmp_path)
    whole = load_images(tmp_path, names, 8)
    x = Images.files(tmp_path, names, 8, hold_bytes=1 << 20 if hold else 0)
    assert x.shape == whole.shape and len(x) == 7
    view = x[1:6:2]  # a slice is a view: nothing decoded yet
    assert isinstance(view, Images) and not x._store.loaded.any()
    assert torch.equal(view.load(), whole[1:6:2])
    assert torch.equal(x[torch.tensor([6, 0, 3])], whole[[6, 0, 3]]) and torch.equal(x[[2]], whole[[2]])
    assert torch.equal(x[4], whole[4]) and x[[]].shape == (0, 3, 8, 8)
    assert torch.equal(torch.cat(list(x.split(3))), whole) and [len(c) for c in x.split(3)] == [3, 3, 1]
    both = Images.concat([x[:2], x[5:]])
    assert torch.equal(both.load(), torch.cat([whole[:2], whole[5:]]))
    order = torch.tensor([3, 1, 0])
    assert torch.equal(torch.cat(list(both.batches(order, 2))), both[order])
    assert torch.equal(torch.cat(list(both.batches(order, 2, workers=2))), both[order])  # workers when read from disk
    assert x._store.loaded.any() == hold  # held pixels are kept as uint8; otherwise read again when asked
    if hold:
        assert x._store.held.dtype == np.uint8


def test_tensor_wraps_without_copy_and_slices_stay_views():
    t = torch.rand(5, 3, 4, 4)
    x = as_images(t)
    assert as_images(x) is x and x._store.x is t
    assert torch.equal(x[1:4][[0, 2]], t[[1, 3]]) and torch.equal(x[1:4].load(), t[1:4])
    assert torch.equal(Images.concat([x[:1], x[3:]]).load(), t[[0, 3, 4]])


def test_an_unreadable_file_is_named_when_read_not_before(tmp_path):
    names = _folder(tmp_path, n=3)
    (tmp_path / "c" / "1.png").write_bytes(b"garbage")
    x = Images.files(tmp_path, names, 8)
    assert torch.equal(x[[0, 2]], load_images(tmp_path, ["c/0.png", "c/2.png"], 8))
    with pytest.raises(ValueError, match=r"c/1\.png is not a readable image .*rebuild the dataset"):
        x[[1]]


def test_resized_images_are_said_once(tmp_path):
    names = _folder(tmp_path, n=4, size=12)
    x = Images.files(tmp_path, names, 8)
    with pytest.warns(UserWarning, match=r"not 8×8 px \(e\.g\. .*c/0\.png \(12×12\)\): resized \(bicubic\)"):
        first = x[[0, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second batch says nothing again
        again = x[[2, 3]]
    with pytest.warns(UserWarning):
        whole = load_images(tmp_path, names, 8)
    assert torch.equal(torch.cat([first, again]), whole)
