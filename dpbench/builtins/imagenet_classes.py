"""The 10 ImageNet classes matched to CIFAR-10's in the DP-LoDA paper's Table I.

`devkit_id` is the ILSVRC2012 devkit's ILSVRC2012_ID (1..1000; meta.mat, and map_clsloc.txt of the
ILSVRC2014 devkit which keeps the same ids). ImageNet32's npz labels use these ids. `sorted_index` is the
0-based position of the wnid in sorted-wnid order (torchvision/Keras/Caffe class-index tables), kept
only so a test can show the two orders differ; never use it to index ImageNet32 labels.

Source of the devkit ids: map_clsloc.txt ("<wnid> <ILSVRC2012_ID> <name>"), as copied in
github.com/wisetrue95/Classification2020 (data/map_clsloc.txt) and github.com/aangelopoulos/rcps
(imagenet/map_clsloc.txt); both copies agree on all ten rows. "Wagon" is read as n02814533
"beach wagon, station wagon, wagon, estate car", the synset named "wagon" among the 1000.
"""
from __future__ import annotations

from typing import NamedTuple


class MatchedClass(NamedTuple):
    name: str
    wnid: str
    devkit_id: int  # ILSVRC2012_ID, 1..1000: what ImageNet32's labels hold
    sorted_index: int  # 0..999 in sorted-wnid order: NOT ImageNet32's labels
    cifar10_index: int


TABLE_I = (
    MatchedClass("airliner", "n02690373", 230, 404, 0),
    MatchedClass("wagon", "n02814533", 266, 436, 1),
    MatchedClass("hummingbird", "n01833805", 415, 94, 2),
    MatchedClass("Siamese cat", "n02123597", 95, 284, 3),
    MatchedClass("hartebeest", "n02422106", 65, 351, 4),
    MatchedClass("golden retriever", "n02099601", 125, 207, 5),
    MatchedClass("tailed frog", "n01644900", 501, 32, 6),
    MatchedClass("sorrel", "n02389026", 39, 339, 7),
    MatchedClass("container ship", "n03095699", 243, 510, 8),
    MatchedClass("trailer truck", "n04467665", 283, 867, 9),
)

DEVKIT_TO_CIFAR10 = {c.devkit_id: c.cifar10_index for c in TABLE_I}
