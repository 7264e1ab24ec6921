"""The forms the benchmark measures: every shippable form, and the steps
on the way to one (ablations), which show what each step buys and are
never shipped, so ``--deploy-form`` does not offer them."""
from typing import Dict

from ..deploy.forms import FORMS, Form
from ..errors import ConfigError

ABLATIONS: Dict[str, Form] = {
    form.name: form
    for form in (
        Form('unfused', 'none'),
        Form('backbone_fused', 'backbone'),
        Form('fused_cl', 'full', channels_last=True),
        Form('compiled_fp32', 'full', runtime='compile'),
    )
}
#: Every form the benchmark can measure, by name.
ALL_FORMS: Dict[str, Form] = {**FORMS, **ABLATIONS}


def benchmark_form(name: str) -> Form:
    """The form called ``name`` (shippable or ablation); a ConfigError
    listing them otherwise."""
    if name not in ALL_FORMS:
        raise ConfigError(f'unknown form {name!r}; choose from '
                          f'{", ".join(ALL_FORMS)}')
    return ALL_FORMS[name]
