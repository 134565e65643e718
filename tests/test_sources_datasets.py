"""Public-dataset layouts, each on a tree built with the dataset's exact published file names."""
from __future__ import annotations

import pytest

from fexdata.ingest.sources import ckplus, ferg, jaffe, kdef, mug, oulu, rafd
from _sources_fixtures import reasons, split, touch, write

# ---------------------------------------------------------------- JAFFE

JAFFE_RATINGS = """Semantic ratings (1-5) averaged over 60 subjects
#  HAP  SAD  SUR  ANG  DIS  FEA PIC
1 1.00 3.00 1.50 4.20 2.00 1.30 KA-AN1
2 4.80 1.00 1.20 1.00 1.00 1.00 KA-HA2

Semantic Ratings Data (Fear Excluded)
1 1.00 3.00 1.50 4.20 2.00 KA-AN1
"""


def test_jaffe(tmp_path):
    touch(tmp_path, "jaffedbase/KA.AN1.39.tiff", "jaffedbase/KA.HA2.30.tiff", "jaffedbase/KA.NE1.26.tiff",
          "jaffedbase/UY.SU3.81.tiff", "jaffedbase/YM.XX1.10.tiff", "jaffedbase/photo.tiff",
          "jaffedbase/README", "jaffedbase/.DS_Store")
    write(tmp_path, "jaffedbase/ratings.txt", JAFFE_RATINGS)
    assert jaffe.detect(tmp_path) and jaffe.detect(tmp_path / "jaffedbase")
    items, rejects = split(jaffe.scan(tmp_path))
    got = [(i.path, i.identity, i.affect, i.affect_raw) for i in items]
    assert got == [("jaffedbase/KA.AN1.39.tiff", "jaffe:KA", "anger", "AN"),
                   ("jaffedbase/KA.HA2.30.tiff", "jaffe:KA", "joy", "HA"),
                   ("jaffedbase/KA.NE1.26.tiff", "jaffe:KA", "neutral", "NE"),
                   ("jaffedbase/UY.SU3.81.tiff", "jaffe:UY", "surprise", "SU")]
    intensity = {i.path.split("/")[-1]: i.intensity for i in items}
    assert intensity["KA.AN1.39.tiff"] == pytest.approx((4.2 - 1) / 4)
    assert intensity["KA.HA2.30.tiff"] == pytest.approx((4.8 - 1) / 4)
    assert intensity["KA.NE1.26.tiff"] is None and intensity["UY.SU3.81.tiff"] is None
    why = reasons(rejects)
    assert set(why) == {"jaffedbase/YM.XX1.10.tiff", "jaffedbase/photo.tiff"}
    assert "unknown JAFFE expression code 'XX'" in why["jaffedbase/YM.XX1.10.tiff"]
    assert "KA.AN1.39.tiff" in why["jaffedbase/photo.tiff"]
    # pointed at the image folder itself, paths are relative to it
    assert [i.path for i in split(jaffe.scan(tmp_path / "jaffedbase"))[0]][0] == "KA.AN1.39.tiff"


# ---------------------------------------------------------------- CK+


def _ck_sequence(root, subject, seq, n, code=None, label_frame=None):
    frames = [f"cohn-kanade-images/{subject}/{seq}/{subject}_{seq}_{i:08d}.png" for i in range(1, n + 1)]
    touch(root, *frames)
    if code is not None:
        last = label_frame or n
        write(root, f"Emotion/{subject}/{seq}/{subject}_{seq}_{last:08d}_emotion.txt", f"   {code:.7e}\n")


def test_ckplus_release(tmp_path):
    root = tmp_path / "CK+"
    _ck_sequence(root, "S005", "001", 11, code=3)
    _ck_sequence(root, "S010", "002", 14, code=2)    # contempt
    _ck_sequence(root, "S010", "003", 9)             # unlabelled: skipped silently
    _ck_sequence(root, "S011", "001", 6, code=9)     # bad code
    _ck_sequence(root, "S011", "002", 6, code=5, label_frame=4)  # label is not on the last frame
    write(root, "Emotion/S099/001/S099_001_00000005_emotion.txt", "5\n")  # label without images
    touch(root, "cohn-kanade-images/S005/001/.DS_Store", "Landmarks/S005/001/S005_001_00000001_landmarks.txt")
    assert ckplus.detect(tmp_path) and ckplus.detect(root)
    items, rejects = split(ckplus.scan(tmp_path))
    got = [(i.path.split("/")[-1], i.identity, i.affect, i.affect_raw, dict(i.extra)["role"]) for i in items]
    assert got == [
        ("S005_001_00000001.png", "ckplus:S005", "neutral", "sequence onset", "onset"),
        ("S005_001_00000009.png", "ckplus:S005", "disgust", "3", "peak"),
        ("S005_001_00000010.png", "ckplus:S005", "disgust", "3", "peak"),
        ("S005_001_00000011.png", "ckplus:S005", "disgust", "3", "peak"),
        ("S010_002_00000001.png", "ckplus:S010", "neutral", "sequence onset", "onset"),
        ("S010_002_00000012.png", "ckplus:S010", "contempt", "2", "peak"),
        ("S010_002_00000013.png", "ckplus:S010", "contempt", "2", "peak"),
        ("S010_002_00000014.png", "ckplus:S010", "contempt", "2", "peak"),
    ]
    assert items[0].path == "CK+/cohn-kanade-images/S005/001/S005_001_00000001.png"
    why = reasons(rejects)
    assert "not one of 0-7" in why["CK+/Emotion/S011/001/S011_001_00000006_emotion.txt"]
    assert "not the last frame" in why["CK+/Emotion/S011/002/S011_002_00000004_emotion.txt"]
    assert "without images" in why["CK+/Emotion/S099/001/S099_001_00000005_emotion.txt"]
    assert len(rejects) == 3
    # the frame counts are options
    items5, _ = split(ckplus.scan(root, peak_frames=5, neutral_frames=2))
    assert sum(dict(i.extra)["role"] == "peak" for i in items5) == 10
    assert sum(i.affect == "neutral" for i in items5) == 4


def test_ck48(tmp_path):
    touch(tmp_path, "CK+48/anger/S010_004_00000017.png", "CK+48/anger/S010_004_00000018.png",
          "CK+48/happy/S011_006_00000013.png", "CK+48/contempt/S138_008_00000007.png",
          "CK+48/happy/img1.png", "CK+48/bored/S011_006_00000013.png")
    assert ckplus.detect(tmp_path)
    items, rejects = split(ckplus.scan(tmp_path))
    assert [(i.path, i.identity, i.affect, i.affect_raw) for i in items] == [
        ("CK+48/anger/S010_004_00000017.png", "ckplus:S010", "anger", "anger"),
        ("CK+48/anger/S010_004_00000018.png", "ckplus:S010", "anger", "anger"),
        ("CK+48/contempt/S138_008_00000007.png", "ckplus:S138", "contempt", "contempt"),
        ("CK+48/happy/S011_006_00000013.png", "ckplus:S011", "joy", "happy"),
    ]
    assert set(reasons(rejects)) == {"CK+48/bored", "CK+48/happy/img1.png"}


# ---------------------------------------------------------------- KDEF


def test_kdef(tmp_path):
    touch(tmp_path, "KDEF/AF01/AF01ANS.JPG", "KDEF/AF01/AF01ANFL.JPG", "KDEF/AF01/AF01HAHR.jpg",
          "KDEF/BF01/BF01SUS.JPG", "KDEF/AM02/AM02AFS.JPG", "KDEF/AM02/AM02XXS.JPG", "KDEF/AM02/IMG_1.JPG",
          "KDEF/extra/AF01ANS.JPG", "KDEF/Thumbs.db")
    assert kdef.detect(tmp_path) and kdef.detect(tmp_path / "KDEF")
    items, rejects = split(kdef.scan(tmp_path))
    got = [(i.path, i.identity, i.affect, i.affect_raw, dict(i.extra)["session"], dict(i.extra)["angle"])
           for i in items]
    assert got == [
        ("KDEF/AF01/AF01ANFL.JPG", "kdef:F01", "anger", "AN", "A", "FL"),
        ("KDEF/AF01/AF01ANS.JPG", "kdef:F01", "anger", "AN", "A", "S"),
        ("KDEF/AF01/AF01HAHR.jpg", "kdef:F01", "joy", "HA", "A", "HR"),
        ("KDEF/AM02/AM02AFS.JPG", "kdef:M02", "fear", "AF", "A", "S"),
        ("KDEF/BF01/BF01SUS.JPG", "kdef:F01", "surprise", "SU", "B", "S"),
    ]
    why = reasons(rejects)
    assert set(why) == {"KDEF/AM02/AM02XXS.JPG", "KDEF/AM02/IMG_1.JPG", "KDEF/extra"}
    assert "AF01ANS.JPG" in why["KDEF/AM02/IMG_1.JPG"]


# ---------------------------------------------------------------- RaFD


def test_rafd(tmp_path):
    touch(tmp_path, "Rafd090_01_Caucasian_female_angry_frontal.jpg", "Rafd045_01_Caucasian_female_happy_left.jpg",
          "Rafd090_72_Moroccan_male_contemptuous_frontal.jpg", "Rafd180_05_Kid_male_surprised_right.jpg",
          "Rafd090_02_Caucasian_female_bored_frontal.jpg", "Rafd100_02_Caucasian_female_sad_frontal.jpg",
          "Rafd090_02_Caucasian_female_sad_up.jpg", "me.jpg")
    assert rafd.detect(tmp_path)
    items, rejects = split(rafd.scan(tmp_path))
    assert [(i.identity, i.affect, i.affect_raw, dict(i.extra)["angle"], dict(i.extra)["gaze"]) for i in items] == [
        ("rafd:01", "joy", "happy", "045", "left"),
        ("rafd:01", "anger", "angry", "090", "frontal"),
        ("rafd:72", "contempt", "contemptuous", "090", "frontal"),
        ("rafd:05", "surprise", "surprised", "180", "right"),
    ]
    why = reasons(rejects)
    assert "unknown RaFD emotion 'bored'" in why["Rafd090_02_Caucasian_female_bored_frontal.jpg"]
    assert "camera angle '100'" in why["Rafd100_02_Caucasian_female_sad_frontal.jpg"]
    assert "gaze 'up'" in why["Rafd090_02_Caucasian_female_sad_up.jpg"]
    assert "Rafd090_01_Caucasian_female_angry_frontal.jpg" in why["me.jpg"]


# ---------------------------------------------------------------- Oulu-CASIA


def test_oulu(tmp_path):
    for variant in ("OriginalImg/VL/Strong", "Cropped/NI/Dark"):
        touch(tmp_path, *[f"{variant}/P001/Anger/{i:03d}.jpeg" for i in range(8)])
    touch(tmp_path, *[f"OriginalImg/VL/Strong/P002/Happiness/{i:03d}.jpeg" for i in range(5)],
          "OriginalImg/VL/Strong/P002/Boredom/000.jpeg", "OriginalImg/VL/Strong/P002/Happiness/cover.jpeg",
          "OriginalImg/VL/Strong/P003/Fear/000.jpeg")
    assert oulu.detect(tmp_path) and oulu.detect(tmp_path / "OriginalImg" / "VL" / "Strong")
    items, rejects = split(oulu.scan(tmp_path))
    strong = [i for i in items if i.path.startswith("OriginalImg/VL/Strong/P001/")]
    assert [(i.path.split("/")[-1], i.affect, i.affect_raw) for i in strong] == [
        ("000.jpeg", "neutral", "sequence onset"), ("005.jpeg", "anger", "Anger"),
        ("006.jpeg", "anger", "Anger"), ("007.jpeg", "anger", "Anger")]
    assert {i.identity for i in items} == {"oulu:P001", "oulu:P002"}
    extra = dict(strong[0].extra)
    assert (extra["variant"], extra["spectrum"], extra["illumination"]) == ("OriginalImg/VL/Strong", "VL", "Strong")
    assert dict([i for i in items if i.path.startswith("Cropped")][0].extra)["spectrum"] == "NI"
    assert [i.affect for i in items if "/P002/" in i.path] == ["neutral", "joy", "joy", "joy"]
    why = reasons(rejects)
    assert set(why) == {"OriginalImg/VL/Strong/P002/Boredom", "OriginalImg/VL/Strong/P002/Happiness/cover.jpeg",
                        "OriginalImg/VL/Strong/P003/Fear"}
    assert "too short" in why["OriginalImg/VL/Strong/P003/Fear"]


# ---------------------------------------------------------------- FERG-DB


def test_ferg(tmp_path):
    touch(tmp_path, "FERG_DB_256/aia/aia_anger/aia_anger_1.png", "FERG_DB_256/aia/aia_anger/aia_anger_10.png",
          "FERG_DB_256/aia/aia_anger/aia_anger_2.png", "FERG_DB_256/ray/ray_joy/ray_joy_5.png",
          "FERG_DB_256/ray/ray_joy/ray_sadness_5.png", "FERG_DB_256/ray/ray_bored/ray_bored_1.png",
          "FERG_DB_256/ray/mery_joy/mery_joy_1.png")
    assert ferg.detect(tmp_path) and ferg.detect(tmp_path / "FERG_DB_256")
    items, rejects = split(ferg.scan(tmp_path))
    assert [(i.path.split("/")[-1], i.identity, i.affect) for i in items] == [
        ("aia_anger_1.png", "ferg:aia", "anger"), ("aia_anger_2.png", "ferg:aia", "anger"),
        ("aia_anger_10.png", "ferg:aia", "anger"), ("ray_joy_5.png", "ferg:ray", "joy")]
    assert set(reasons(rejects)) == {"FERG_DB_256/ray/ray_joy/ray_sadness_5.png", "FERG_DB_256/ray/ray_bored",
                                     "FERG_DB_256/ray/mery_joy"}


# ---------------------------------------------------------------- MUG


def test_mug(tmp_path):
    touch(tmp_path, *[f"subjects3/001/anger/take000/img_{i:04d}.jpg" for i in range(9)],
          *[f"subjects3/001/neutral/take001/img_{i:04d}.jpg" for i in range(2)],
          *[f"subjects3/002/session1/happiness/take003/img_{i:04d}.jpg" for i in range(3)],
          "subjects3/002/boredom/take000/img_0000.jpg", "subjects3/abc/anger/take000/img_0000.jpg",
          "subjects3/001/anger/take000/notes.txt", "subjects3/ReadMe.pdf")
    (tmp_path / "subjects3" / "001" / "fear" / "take000").mkdir(parents=True)
    assert mug.detect(tmp_path) and mug.detect(tmp_path / "subjects3")
    items, rejects = split(mug.scan(tmp_path))
    anger = [(i.path.split("/")[-1], i.affect, dict(i.extra)["role"]) for i in items if "/anger/" in i.path]
    # 9 frames: the first as neutral onset, the middle third (frames 3-5) as the apex
    assert anger == [("img_0000.jpg", "neutral", "onset"), ("img_0003.jpg", "anger", "apex"),
                     ("img_0004.jpg", "anger", "apex"), ("img_0005.jpg", "anger", "apex")]
    assert [i.affect for i in items if "/neutral/" in i.path] == ["neutral", "neutral"]
    assert [(i.identity, i.affect) for i in items if "session1" in i.path] == [("mug:002", "neutral"), ("mug:002", "joy")]
    why = reasons(rejects)
    assert set(why) == {"subjects3/002/boredom", "subjects3/abc", "subjects3/001/fear/take000"}  # notes: ignored
    assert "no frames" in why["subjects3/001/fear/take000"]


@pytest.mark.parametrize("module", [jaffe, ckplus, kdef, rafd, oulu, ferg, mug])
def test_detect_is_false_on_other_trees(tmp_path, module):
    touch(tmp_path, "alice/joy/a.png", "ada/joy.mp4", "notes.txt")
    assert not module.detect(tmp_path)


def test_ckplus_without_emotion_folder_says_so(tmp_path):
    touch(tmp_path, "cohn-kanade-images/S005/001/S005_001_00000001.png")
    items, rejects = split(ckplus.scan(tmp_path))
    assert items == [] and "no Emotion/ folder" in reasons(rejects)["cohn-kanade-images"]
