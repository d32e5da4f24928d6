"""Benchmark loaders on small fixtures in each official layout, and on parquet copies."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from moonlet.eval.benchmarks import BENCHMARKS, get_benchmark, is_parquet, load_samples, render_prompt
from moonlet.eval.samples import DatasetError, LazyImage, resolve_image

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eval"


def load(name: str, relative: str, images: Path | None = None):
    return load_samples(BENCHMARKS[name], FIXTURES / relative, images)


def assert_images_exist(samples):
    for sample in samples:
        assert Path(sample.image).is_file(), sample.image


# --- official layouts ----------------------------------------------------------------------------


def test_vqav2_questions_joined_with_annotations():
    samples = load("vqav2", "vqav2")
    assert [s.id for s in samples] == ["42000", "42001", "73000"]
    first = samples[0]
    assert first.question == "How many cats are there?"
    assert len(first.answers) == 10 and first.answers[2] == "two"
    assert first.categories == {"answer_type": "number"}
    assert Path(first.image).name == "COCO_val2014_000000000042.jpg"
    assert Path(samples[2].image).name == "COCO_val2014_000000000073.jpg"
    assert_images_exist(samples)
    # the questions file alone finds its annotations beside it
    assert len(load("vqav2", "vqav2/v2_OpenEnded_mscoco_val2014_questions.json")) == 3


def test_textvqa():
    samples = load("textvqa", "textvqa")
    assert [s.id for s in samples] == ["34602", "34603"]
    assert samples[0].answers.count("nokia") == 8 and len(samples[0].answers) == 10
    assert Path(samples[0].image).parent.name == "train_images"
    assert_images_exist(samples)


def test_gqa_categories():
    samples = load("gqa", "gqa")
    assert [s.id for s in samples] == ["201307251", "201640614"]
    assert samples[0].answers == ["no"]
    assert samples[1].categories == {"structural": "query", "semantic": "rel"}
    assert_images_exist(samples)


def test_pope_categories_from_file_names():
    samples = load("pope", "pope")
    assert sorted(s.id for s in samples) == ["adversarial:1", "random:1", "random:2"]
    by_id = {s.id: s for s in samples}
    assert by_id["random:2"].answers == ["no"] and by_id["random:2"].question == "Is there a dog in the image?"
    assert by_id["adversarial:1"].categories == {"category": "adversarial"}
    assert_images_exist(samples)
    single = load("pope", "pope/coco_pope_random.json")
    assert {s.categories["category"] for s in single} == {"random"}


def test_docvqa():
    samples = load("docvqa", "docvqa")
    assert samples[1].answers == ["ITC Limited", "ITC"]
    assert samples[1].categories == {"question_type": ["layout", "form"]}
    assert Path(samples[0].image).parts[-2:] == ("documents", "pybv0228_81.png")
    assert_images_exist(samples)


def test_chartqa_human_and_augmented():
    samples = load("chartqa", "chartqa/test")
    sources = {s.id: s.categories["source"] for s in samples}
    assert sources == {"augmented:0": "augmented", "augmented:1": "augmented", "human:0": "human"}
    human = next(s for s in samples if s.id == "human:0")
    assert human.answers == ["12.5"] and human.question.startswith("What is the value")
    assert_images_exist(samples)


def test_tallyqa():
    samples = load("tallyqa", "tallyqa")
    assert [s.answers for s in samples] == [[2], [0]]
    assert [s.categories["subset"] for s in samples] == ["simple", "complex"]
    assert_images_exist(samples)


def test_countbenchqa_json():
    (sample,) = load("countbenchqa", "countbenchqa")
    assert sample.answers == [3] and sample.categories == {"count": "3"}
    assert_images_exist([sample])


def test_coco_instances():
    samples = load("coco", "coco")  # the folder holding annotations/ and val2017/
    assert sorted(s.id for s in samples) == ["139:chair", "139:person"]
    chair = next(s for s in samples if s.question == "chair")
    assert chair.task == "detect"
    # bbox [8, 4, 16, 16] in an 80x40 image -> corners normalised
    assert chair.target["boxes"] == [pytest.approx([0.1, 0.1, 0.3, 0.5])]
    person = next(s for s in samples if s.question == "person")
    assert person.target["crowd"] == [False, True]
    assert_images_exist(samples)


def test_synthetic_rows():
    samples = load("synthetic", "synthetic")
    tasks = [s.task for s in samples]
    # the caption without "objects" has nothing to be scored against and is skipped
    assert tasks == ["query", "query", "detect", "detect", "point", "point", "point", "caption"]
    assert [s.id for s in samples][:2] == ["test:1", "test:2"]
    assert samples[0].categories == {"type": "color"} and samples[1].answers == ["1"]
    assert samples[2].target["boxes"] == [[0.25, 0.25, 0.75, 0.75]]
    assert samples[3].question == "circle" and samples[3].target["boxes"] == []
    # a point row borrows the boxes of the detect row for the same image and object
    assert samples[4].target["boxes"] == [[0.25, 0.25, 0.75, 0.75]]
    assert samples[5].target["boxes"] == [[0.25, 0.25, 0.75, 0.75]]
    assert "boxes" not in samples[6].target  # another image: no detect row to borrow from
    assert samples[7].target == {"objects": ["square"], "length": "short"}
    assert_images_exist(samples)


def test_prompts():
    vqa = get_benchmark("VQAv2")
    sample = load("vqav2", "vqav2")[0]
    assert render_prompt(vqa, sample) == "How many cats are there? Answer with a single word or phrase."
    assert render_prompt(vqa, sample, "Q: {question}") == "Q: How many cats are there?"
    chair = load("coco", "coco")[0]
    assert render_prompt(get_benchmark("coco"), chair) == chair.question


# --- errors ----------------------------------------------------------------------------------------


def test_wrong_path_and_unknown_benchmark(tmp_path):
    with pytest.raises(DatasetError, match="data path not found"):
        load_samples(BENCHMARKS["vqav2"], tmp_path / "nope")
    with pytest.raises(DatasetError, match="unknown benchmark 'mmmu'"):
        get_benchmark("mmmu")
    with pytest.raises(DatasetError, match="no VQAv2 questions file"):
        load_samples(BENCHMARKS["vqav2"], tmp_path)


def test_missing_key_names_file_and_key(tmp_path):
    shutil.copytree(FIXTURES / "textvqa", tmp_path / "textvqa")
    file = tmp_path / "textvqa" / "TextVQA_0.5.1_val.json"
    data = json.loads(file.read_text())
    del data["data"][1]["answers"]
    file.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as error:
        load_samples(BENCHMARKS["textvqa"], file)
    assert "TextVQA_0.5.1_val.json data[1]" in str(error.value) and "'answers'" in str(error.value)


def test_missing_annotations_list(tmp_path):
    (tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"data_subtype": "val2014", "questions": []})
    )
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"info": {}}))
    with pytest.raises(DatasetError, match=r"annotations\.json: missing key 'annotations'"):
        load_samples(BENCHMARKS["vqav2"], tmp_path)


def test_missing_images_are_reported_with_a_hint(tmp_path):
    shutil.copy(FIXTURES / "gqa" / "testdev_balanced_questions.json", tmp_path)
    with pytest.raises(DatasetError, match=r"n161313\.jpg.*--images"):
        load_samples(BENCHMARKS["gqa"], tmp_path)
    # pointing --images at the real folder fixes it
    samples = load_samples(BENCHMARKS["gqa"], tmp_path, FIXTURES / "gqa" / "images")
    assert_images_exist(samples)
    with pytest.raises(DatasetError, match="image folder not found"):
        load_samples(BENCHMARKS["gqa"], tmp_path, tmp_path / "missing")


def test_invalid_json_is_named(tmp_path):
    (tmp_path / "test.json").write_text("[{not json")
    with pytest.raises(DatasetError, match=r"test\.json is not valid JSON"):
        load_samples(BENCHMARKS["tallyqa"], tmp_path)
    (tmp_path / "coco_pope_random.json").write_text('{"question_id": 1}\n{broken\n')
    with pytest.raises(DatasetError, match=r"coco_pope_random\.json:2"):
        load_samples(BENCHMARKS["pope"], tmp_path / "coco_pope_random.json")


def test_synthetic_row_without_a_task(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps({"image": "x.png", "label": 3}) + "\n")
    with pytest.raises(DatasetError, match=r"test\.jsonl:1: expected 'question'"):
        load_samples(BENCHMARKS["synthetic"], tmp_path)
    (tmp_path / "test.jsonl").write_text(json.dumps({"image": "x.png", "object": "a", "boxes": [[0, 1]]}) + "\n")
    with pytest.raises(DatasetError, match="boxes"):
        load_samples(BENCHMARKS["synthetic"], tmp_path)


def test_duplicate_ids_rejected(tmp_path):
    rows = [{"image": "../synthetic/images/red.png", "question": "q", "answer": "a", "id": "same"}] * 2
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match="duplicate sample id 'same'"):
        load_samples(BENCHMARKS["synthetic"], tmp_path, FIXTURES / "synthetic")


# --- parquet copies --------------------------------------------------------------------------------


def png_bytes(color=(10, 200, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_parquet(path: Path, rows: list[dict], metadata: dict | None = None, row_group_size: int | None = None):
    import pyarrow as pa
    from pyarrow import parquet as pq

    table = pa.Table.from_pylist(rows)
    if metadata:
        table = table.replace_schema_metadata({b"huggingface": json.dumps(metadata).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def decoded_size(image) -> tuple[int, int]:
    data = resolve_image(image)
    return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data).size


def test_vqav2_parquet_lazy_images_across_row_groups(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    rows = [
        {
            "question_id": 100 + i,
            "question": f"q{i}",
            "answer_type": "other",
            "image_id": i,
            "answers": [{"answer": "red", "answer_confidence": "yes", "answer_id": j} for j in range(10)],
            "image": {"bytes": png_bytes(c), "path": None},
        }
        for i, c in enumerate(colors)
    ]
    write_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet", rows, row_group_size=2)
    (tmp_path / "README.md").write_text("hub copy")
    assert is_parquet(tmp_path)
    samples = load_samples(BENCHMARKS["vqav2"], tmp_path)
    assert [s.id for s in samples] == ["100", "101", "102"]
    assert samples[0].answers == ["red"] * 10 and samples[0].categories == {"answer_type": "other"}
    assert isinstance(samples[2].image, LazyImage)
    for sample, color in zip(samples, colors):  # each row gets its own image, even in a later row group
        data = resolve_image(sample.image)
        assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0)) == color


def test_parquet_image_as_relative_path(tmp_path):
    Image.new("RGB", (5, 5)).save(tmp_path / "pic.png")
    write_parquet(
        tmp_path / "t.parquet",
        [{"question": "q", "answers": ["a"] * 10, "question_id": 1, "image": {"bytes": None, "path": "pic.png"}}],
    )
    (sample,) = load_samples(BENCHMARKS["textvqa"], tmp_path / "t.parquet")
    assert resolve_image(sample.image) == tmp_path / "pic.png"


def test_pope_parquet_flat_and_nested(tmp_path):
    image = {"bytes": png_bytes(), "path": None}
    write_parquet(
        tmp_path / "flat" / "test.parquet",
        [
            {
                "id": "0",
                "question_id": "1",
                "question": "Is there a cat?",
                "answer": "Yes",
                "image_source": "x",
                "image": image,
                "category": "popular",
            },
        ],
    )
    (flat,) = load_samples(BENCHMARKS["pope"], tmp_path / "flat")
    assert flat.id == "popular:1" and flat.answers == ["yes"] and flat.categories == {"category": "popular"}
    qa = [{"question": "Is there a dog?", "answer": "no"}]
    write_parquet(
        tmp_path / "nested" / "test.parquet", [{"image": image, "random": qa, "popular": qa, "adversarial": qa}]
    )
    nested = load_samples(BENCHMARKS["pope"], tmp_path / "nested")
    assert sorted(s.categories["category"] for s in nested) == ["adversarial", "popular", "random"]
    assert all(s.question == "Is there a dog?" and s.answers == ["no"] for s in nested)


def test_gqa_parquet_with_separate_image_table(tmp_path):
    write_parquet(
        tmp_path / "testdev_balanced_instructions" / "t.parquet",
        [
            {
                "id": "q1",
                "imageId": "n1",
                "question": "Is it sunny?",
                "answer": "yes",
                "types": {"structural": "verify", "semantic": "global", "detailed": "x"},
            },
        ],
    )
    write_parquet(
        tmp_path / "testdev_balanced_images" / "t.parquet",
        [{"id": "n1", "image": {"bytes": png_bytes(), "path": None}}],
    )
    (sample,) = load_samples(BENCHMARKS["gqa"], tmp_path)
    assert sample.id == "q1" and sample.categories == {"structural": "verify", "semantic": "global"}
    assert decoded_size(sample.image) == (6, 4)
    shutil.rmtree(tmp_path / "testdev_balanced_images")
    with pytest.raises(DatasetError, match="no image with id 'n1'"):
        load_samples(BENCHMARKS["gqa"], tmp_path)


def test_nested_qa_parquet_tallyqa_and_chartqa(tmp_path):
    image = {"bytes": png_bytes(), "path": None}
    write_parquet(
        tmp_path / "tally.parquet",
        [
            {
                "image": image,
                "qa": [
                    {"question": "How many cats?", "answer": 2, "is_simple": True},
                    {"question": "How many sitting cats?", "answer": 1, "is_simple": False},
                ],
            }
        ],
    )
    tally = load_samples(BENCHMARKS["tallyqa"], tmp_path / "tally.parquet")
    assert [s.answers for s in tally] == [[2], [1]]
    assert [s.categories["subset"] for s in tally] == ["simple", "complex"]
    assert len({s.id for s in tally}) == 2
    write_parquet(
        tmp_path / "chart.parquet",
        [
            {"image": image, "query": "Max?", "label": ["12"], "human_or_machine": 0},
            {"image": image, "query": "Min?", "label": ["3"], "human_or_machine": 1},
        ],
    )
    chart = load_samples(BENCHMARKS["chartqa"], tmp_path / "chart.parquet")
    assert [s.categories["source"] for s in chart] == ["human", "augmented"] and chart[0].answers == ["12"]


def test_docvqa_and_countbench_parquet(tmp_path):
    image = {"bytes": png_bytes(), "path": None}
    write_parquet(
        tmp_path / "doc.parquet",
        [
            {
                "questionId": "7",
                "question": "Name?",
                "question_types": ["form"],
                "image": image,
                "docId": 1,
                "answers": ["ITC", "ITC Ltd"],
            }
        ],
    )
    (doc,) = load_samples(BENCHMARKS["docvqa"], tmp_path / "doc.parquet")
    assert doc.id == "7" and doc.answers == ["ITC", "ITC Ltd"] and doc.categories == {"question_type": ["form"]}
    write_parquet(
        tmp_path / "count.parquet", [{"image": image, "text": "three cats", "question": "How many cats?", "number": 3}]
    )
    (count,) = load_samples(BENCHMARKS["countbenchqa"], tmp_path / "count.parquet")
    assert count.answers == [3] and count.categories == {"count": "3"}


def test_coco_parquet_with_class_label_names(tmp_path):
    metadata = {
        "info": {
            "features": {
                "objects": {
                    "feature": {"category": {"names": ["person", "bicycle"], "_type": "ClassLabel"}},
                    "_type": "Sequence",
                }
            }
        }
    }
    write_parquet(
        tmp_path / "coco.parquet",
        [
            {
                "image_id": 9,
                "image": {"bytes": png_bytes(), "path": None},
                "width": 60,
                "height": 40,
                "objects": {"bbox": [[6.0, 4.0, 30.0, 20.0], [0.0, 0.0, 60.0, 40.0]], "category": [1, 0]},
            }
        ],
        metadata,
    )
    samples = load_samples(BENCHMARKS["coco"], tmp_path / "coco.parquet")
    by_name = {s.question: s for s in samples}
    assert set(by_name) == {"bicycle", "person"}
    assert by_name["bicycle"].target["boxes"] == [pytest.approx([0.1, 0.1, 0.6, 0.6])]
    xyxy = load_samples(BENCHMARKS["coco"], tmp_path / "coco.parquet", box_format="xyxy")
    assert next(s for s in xyxy if s.question == "bicycle").target["boxes"] == [pytest.approx([0.1, 0.1, 0.5, 0.5])]


def test_parquet_missing_column_is_named(tmp_path):
    write_parquet(tmp_path / "bad.parquet", [{"question": "q", "image": {"bytes": png_bytes(), "path": None}}])
    with pytest.raises(DatasetError, match=r"bad\.parquet row 0: missing column 'answers'"):
        load_samples(BENCHMARKS["textvqa"], tmp_path / "bad.parquet")
