"""Step 3: which training recipe and variant, and what each needs (repos, sizes, GPUs, time)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on, work
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.geometry import Size
from textual.widget import Widget
from textual.widgets import Input, Label, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from hpcwizard.checks import hub
from hpcwizard.errors import UserError
from hpcwizard.project.plan import _HF_NAME, Plan
from hpcwizard.project.recipe import Recipe, all_recipes
from hpcwizard.project.wizard_steps import RECIPE
from hpcwizard.sizes import human_bytes
from hpcwizard.tui.choices import RecipeChoice
from hpcwizard.tui.messages import TokenChecked
from hpcwizard.tui.screens.step import StepScreen


def describe(recipe: Recipe, variant: str | None, namespace: str | None = None) -> Text:
    """What a recipe (and variant) needs, from its recipe.yaml; repo ids with
    ``{namespace}`` filled in when it is known (a valid HF name)."""
    text = Text()
    text.append(f"{recipe.title}\n", style="bold")
    text.append(f"{recipe.description}\n\n")
    repos = [r for r in recipe.repos if not r.optional and (not r.variants or variant in r.variants)]
    total = sum(r.size_bytes for r in repos)
    text.append(f"Downloads ({human_bytes(total)}):\n", style="bold")
    for repo in repos:
        gated = " gated" if repo.gated else ""
        repo_id = repo.repo_id.replace("{namespace}", namespace) if namespace else repo.repo_id
        text.append(f"  {repo.repo_type} {repo_id}", style="cyan")
        text.append(f"  ~{human_bytes(repo.size_bytes)}{gated}\n")
        text.append(f"    {repo.purpose}\n", style="dim")
    text.append("Jobs (defaults, change them at the Slurm step):\n", style="bold")
    for job in recipe.jobs:
        res = recipe.defaults[job.resources]
        text.append(f"  {job.name}: ", style="bold")
        text.append(f"{res.describe()} on {res.partition}\n")  # "1 CPU", "00:10:00": never "1 CPUs" or a raw "1"
        if job.description:
            text.append(f"    {job.description}\n", style="dim")
    if recipe.checkpoint_bytes or recipe.final_bytes:
        text.append(f"Outputs: checkpoints of about {human_bytes(recipe.checkpoint_bytes)} each, "
                    f"final weights about {human_bytes(recipe.final_bytes)}.\n")
    return text


class VariantButton(RadioButton):
    """A variant with its description, wrapped: a RadioButton is one line, and at
    80-100 columns the description ended "work folde…"."""

    DEFAULT_CSS = """
    VariantButton { width: 1fr; height: auto; text-wrap: wrap; text-overflow: fold; }
    """

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # As Textual's own Widget.get_content_height does; Content.get_height's
        # annotation asks for a RulesMap, though it reads the styles as one.
        return self.render().get_height(self.styles, width)  # type: ignore[arg-type]


class RecipeStep(StepScreen):
    STEP = RECIPE.key
    CSS_PATH = "recipe_step.tcss"

    def __init__(self, plan: Plan | None, *, default_namespace: str | None = None,
                 reached: int | None = None) -> None:
        super().__init__(reached=reached)
        self.recipes = all_recipes()
        self.plan = plan
        self.chosen = plan.recipe if plan else next(iter(self.recipes))
        self.variant = plan.variant if plan else None
        self.namespace = (plan.hf_namespace if plan else None) or default_namespace or ""

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="recipe-columns"):
            yield OptionList(*[Option(f"{r.name}\n[dim]{r.title}[/]", id=r.name) for r in self.recipes.values()],
                             id="recipe-list")
            with Vertical(id="recipe-side"):
                yield RadioSet(id="recipe-variants")
                with Horizontal(id="recipe-namespace-row"):
                    yield Label("HF namespace", id="recipe-namespace-label")
                    yield Input(self.namespace, placeholder="your HF user or org", id="recipe-namespace")
                with VerticalScroll(id="recipe-details-scroll"):
                    yield Static("", id="recipe-details")

    def on_mount(self) -> None:
        options = self.query_one("#recipe-list", OptionList)
        options.highlighted = list(self.recipes).index(self.chosen)
        options.focus()
        self.show_recipe(self.chosen)
        if not self.namespace:
            self.whoami()  # resumed here: the token step did not run in this session

    @work(thread=True, exclusive=True, group="hub-whoami", exit_on_error=False)
    def whoami(self) -> None:
        source = hub.find_token()
        if source is None:
            return
        try:
            user = hub.validate_token(source.token, self.context.hf_endpoint)
        except UserError:
            return  # the preflight explains a bad token; here it only fills a default
        self.post_message(TokenChecked(user.name))

    def on_token_checked(self, message: TokenChecked) -> None:
        field = self.query_one("#recipe-namespace", Input)
        if message.user and not field.value:
            field.value = message.user

    @property
    def recipe(self) -> Recipe:
        return self.recipes[self.chosen]

    def show_recipe(self, name: str) -> None:
        recipe = self.recipes[name]
        if name != self.chosen or self.variant not in recipe.variant_names:
            self.variant = recipe.variants[0].name if recipe.variants else None
        self.chosen = name
        variants = self.query_one("#recipe-variants", RadioSet)
        variants.remove_children()
        variants.display = bool(recipe.variants)
        if recipe.variants:
            variants.mount_all([VariantButton(f"{v.name}: {v.description}" if v.description else v.name,
                                            value=v.name == self.variant, name=v.name)
                                for v in recipe.variants])
        self.query_one("#recipe-namespace-row").display = recipe.needs_namespace
        self.refresh_details()

    def refresh_details(self) -> None:
        self.query_one("#recipe-details", Static).update(describe(self.recipe, self.variant, self.typed_namespace()))
        variant = f", variant {self.variant}" if self.variant else ""
        self.set_status(f"{self.chosen}{variant}")
        self.kept = self.keepable() or self.kept

    def keepable(self) -> object | None:
        """What Back, a jump or quitting saves: a new variant or namespace of the
        plan's own recipe (None while the namespace is not a valid name: the last
        valid one stays). Merely highlighting another recipe saves nothing: choosing
        one resets the later steps, which only Next should do."""
        if self.plan is None or self.chosen != self.plan.recipe:
            return None
        namespace = self.typed_namespace()
        if self.recipe.needs_namespace and namespace is None:
            return None
        return RecipeChoice(self.chosen, self.variant, namespace)

    @on(OptionList.OptionHighlighted, "#recipe-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.chosen:
            self.show_recipe(event.option.id)

    @on(OptionList.OptionSelected, "#recipe-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.show_recipe(event.option.id)
        target = self.query_one("#recipe-variants") if self.recipe.variants else self.query_one("#step-next")
        target.focus()

    @on(RadioSet.Changed, "#recipe-variants")
    def _variant(self, event: RadioSet.Changed) -> None:
        self.variant = event.pressed.name
        self.refresh_details()

    def typed_namespace(self) -> str | None:
        """The namespace field's value when it is a valid HF name (else the ids keep {namespace})."""
        text = self.query_one("#recipe-namespace", Input).value.strip()
        return text if text and _HF_NAME.match(text) else None

    @on(Input.Changed, "#recipe-namespace")
    def _namespace_typed(self, event: Input.Changed) -> None:
        self.refresh_details()

    @on(Input.Submitted, "#recipe-namespace")
    def _enter(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def submit(self) -> None:
        namespace: str | None = self.query_one("#recipe-namespace", Input).value.strip() or None
        if not self.recipe.needs_namespace:
            namespace = namespace or None
        elif namespace is None:
            self.set_status(f"{self.chosen} fetches your own repos: enter your HF user or org", error=True)
            self.query_one("#recipe-namespace", Input).focus()
            return
        if namespace is not None and not _HF_NAME.match(namespace):
            self.set_status(f"{namespace!r} is not a Hugging Face user or organisation name", error=True)
            return
        self.dismiss(RecipeChoice(self.chosen, self.variant, namespace))
