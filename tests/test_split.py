import pytest

from gader.data import split_subjects
from gader.errors import GaderError

SUBJECTS = [f"{i:03d}" for i in range(1, 75)]


def test_split_is_disjoint_complete_and_deterministic():
    train, val = split_subjects(SUBJECTS, val_fraction=0.2, seed=3)
    assert not set(train) & set(val)
    assert sorted(train + val) == SUBJECTS
    assert len(val) == 15
    assert (train, val) == split_subjects(list(reversed(SUBJECTS)), val_fraction=0.2, seed=3)
    assert val != split_subjects(SUBJECTS, val_fraction=0.2, seed=4)[1]


def test_split_by_count_and_bad_arguments():
    assert len(split_subjects(SUBJECTS, val_count=10)[1]) == 10
    with pytest.raises(GaderError):
        split_subjects(SUBJECTS, val_count=100)
    with pytest.raises(GaderError):
        split_subjects(SUBJECTS, val_fraction=1.5)


@pytest.mark.shared_data
def test_split_dataset_views_share_no_subject(casia_train):
    from gader.data import open_dataset, split_dataset

    train, val = split_dataset(open_dataset(casia_train), val_count=14, seed=0)
    assert len(val.subjects) == 14 and len(train.subjects) == 60
    assert not {i.subject for i in train.infos} & {i.subject for i in val.infos}
    assert len(train) + len(val) == 8107
