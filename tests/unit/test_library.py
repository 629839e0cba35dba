import uuid

from vaultline.domain import library


def test_file_names_keep_the_original_name_and_carry_the_content_id():
    cid = uuid.uuid4()
    name = library.file_name("ComfyUI_00042_.png", cid)
    assert name == f"ComfyUI_00042_--{cid}.png"
    assert library.content_id_from_name(name) == cid
    assert library.content_id_from_name(f"/x/y/{name}") == cid
    assert library.content_id_from_name("holiday.png") is None


def test_unsafe_characters_are_replaced_and_long_names_cut():
    cid = uuid.uuid4()
    name = library.file_name("../../ét é/x" + "a" * 200 + ".png", cid, ".jpg")
    assert "/" not in name and " " not in name and name.endswith(f"--{cid}.jpg")
    assert library.content_id_from_name(name) == cid


def test_keys_and_stages():
    assert library.key("elena", library.APPROVED, "n.png", vault="ppv") == "elena/4_approved/ppv/n.png"
    assert library.stage_of("elena/4_approved/ppv/n.png") == ("4_approved", "ppv")
    assert library.stage_of("elena/3_review/n.png") == ("3_review", None)
    assert library.extension_for("JPEG", "x.png") == ".jpg"
    assert library.extension_for(None, "x.WEBP") == ".webp"
    assert library.extension_for(None, "x") == ".bin"
