from __future__ import annotations

import pytest

from biasaudit.core.errors import ValidationError
from biasaudit.core.schema import BUILTIN_SCHEMAS
from biasaudit.heml import default_tree, load_recipe


@pytest.mark.parametrize("schema", BUILTIN_SCHEMAS)
def test_default_recipes_are_valid_binary_trees(schema):
    tree = default_tree(schema)
    internal = [n for n in tree.nodes.values() if not n.is_leaf]
    # a full binary tree has exactly one internal node fewer than leaves
    assert len(internal) == len(tree.leaves) - 1
    assert all(len(n.children) == 2 for n in internal)
    assert tree.root == "image" and tree.parent_of("image") is None
    parts = [p for leaf in tree.leaves for p in tree.nodes[leaf].parts]
    assert len(parts) == len(set(parts))
    assert set(tree.nodes[tree.root].parts) == set(parts)


def test_celebamask_tree_covers_every_part_and_is_about_twenty_nodes():
    tree = default_tree("celebamask-hq")
    assert set(tree.nodes[tree.root].parts) == set(tree.schema.part_names)
    assert len(tree.nodes) == 21
    assert tree.nodes["mouth"].parts == ("mouth", "u_lip", "l_lip")
    assert tree.part_ids("hair") == (13,)
    levels = tree.levels()
    assert levels[0] == list(tree.leaves)
    for depth, level in enumerate(levels[1:], start=1):
        for name in level:
            assert all(tree.height(c) < depth for c in tree.nodes[name].children)


def test_string_leaves_and_default_names():
    tree = load_recipe({"schema": "celebamask-hq", "defaults": {"epochs": 2},
                        "tree": {"children": ["hair", {"children": ["l_eye+r_eye", "nose"], "epochs": 5}]}})
    assert tree.root == "hair+l_eye+r_eye+nose"
    assert tree.nodes["l_eye+r_eye"].parts == ("l_eye", "r_eye")
    assert tree.nodes["l_eye+r_eye+nose"].options.epochs == 5
    assert tree.nodes["hair"].options.epochs == 2
    assert load_recipe(tree.to_dict()) == tree


def test_recipe_from_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("schema: lip\ntree:\n  name: top\n  children: [hair, face]\n")
    tree = load_recipe(path)
    assert tree.root == "top" and tree.leaves == ("hair", "face")


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"name": "top", "children": ["hair", "nose", "skin"]}, "node 'top' has 3 children"),
        ({"name": "top", "children": ["hair"]}, "node 'top' has 1 children"),
        ({"name": "top", "children": ["hair", {"name": "again", "parts": ["nose", "hair"]}]},
         "part 'hair' appears in leaf node 'again' and again in leaf 'hair'"),
        ({"children": ["hair", {"name": "bad", "parts": ["tail"]}]}, "leaf node 'bad' names part 'tail'"),
        ({"name": "x", "parts": ["hair"], "children": ["nose", "skin"]}, "node 'x' must have either"),
        ({"children": ["hair", {"name": "hair", "parts": ["nose"]}]}, "node name 'hair' is used twice"),
        ({"name": "big", "resolution": 2, "children": ["hair", "nose"]}, "node 'big': The 'resolution'"),
        ({"name": "y", "colour": 1, "children": ["hair", "nose"]}, "node 'y' has unknown key(s) ['colour']"),
    ],
)
def test_invalid_trees_name_the_bad_node(tree, message):
    with pytest.raises(ValidationError) as err:
        load_recipe({"schema": "celebamask-hq", "tree": tree})
    assert message in str(err.value)


def test_a_forest_is_rejected_and_unknown_schema_named():
    with pytest.raises(ValidationError, match="a tree has one root"):
        load_recipe({"schema": "celebamask-hq", "tree": ["hair", "nose"]})
    with pytest.raises(ValidationError, match="no default segment tree for schema 'cats'"):
        default_tree("cats")
    with pytest.raises(ValidationError, match="neither a built-in schema"):
        load_recipe("no/such/recipe.yaml")


def test_scaling_options_for_bigger_machines():
    tree = default_tree("celebamask-hq")
    assert tree.scaled_resolution(2.0).nodes["image"].options.resolution == 96
    assert tree.scaled_resolution(0.1).nodes["mouth"].options.resolution == 8
    assert tree.with_options(trunk="efficientnet-lite0").nodes["hair"].options.trunk == "efficientnet-lite0"
    with pytest.raises(ValidationError, match="Unknown node option"):
        tree.with_options(colour=1)
