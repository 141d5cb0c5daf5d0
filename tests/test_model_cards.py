from pathlib import Path

import pytest
from huggingface_hub import EvalResult, ModelCard, ModelCardData

CARDS = Path(__file__).resolve().parent.parent / "longbird" / "model_cards"


def card_data(task_type: str) -> ModelCardData:
    return ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        tags=["longbird", "long-context"],
        model_name="tiny",
        datasets=["scitldr"],
        eval_results=[
            EvalResult(
                task_type=task_type,
                dataset_type="epdnew",
                dataset_name="EPDnew promoters",
                metric_type="accuracy",
                metric_value=0.9,
            )
        ],
    )


def test_bigbird_card_template_renders_with_results():
    card = ModelCard.from_template(
        card_data("text-classification"),
        template_path=str(CARDS / "longbird_bigbird.md"),
        model_id="org/tiny-bigbird",
        window_blocks=5,
        num_random_blocks=0,
    )
    text = str(card)
    assert "# org/tiny-bigbird" in text
    assert 'AutoModel.from_pretrained("org/tiny-bigbird", trust_remote_code=True)' in text
    assert "window 5 blocks, 0 random blocks" in text
    assert card.data.eval_results[0].metric_value == 0.9


@pytest.mark.parametrize(
    "template,fields,expected",
    [
        ("longbird_etc.md", dict(local_radius=42, use_hard_g2l_mask="off"), "local radius 42 tokens"),
        ("longbird_bigbird_pegasus.md", dict(max_new_tokens=64), 'pipeline("summarization", model="org/tiny"'),
    ],
)
def test_etc_and_pegasus_card_templates_render(template, fields, expected):
    card = ModelCard.from_template(
        card_data("summarization"), template_path=str(CARDS / template), model_id="org/tiny", **fields
    )
    text = str(card)
    assert expected in text and "# org/tiny" in text
    assert "{{" not in text  # every placeholder filled or defaulted
    assert ModelCard(text).data.license == "apache-2.0"
