"""Pack the trained models of one checkout into a file, and unpack them into another.

A 90-minute lab cannot wait for training: ``make figures`` takes about 18 minutes on two cores.
So the lecturer trains once and packs the result::

    umlkit cache export lab.tar.gz --profile default     # on the lecturer's machine
    umlkit cache import lab.tar.gz                        # in each student's fresh clone

and every notebook of the student's clone then *loads* its models instead of training them
(:func:`umlkit.train.get_or_train` and :func:`umlkit.semi.loop.get_or_train_semi` find each run
by the hash of its configuration, and the hash comes out the same in the new clone).

**The archive** (a ``.tar.gz`` or ``.zip``, written with Python's ``tarfile`` / ``zipfile``)::

    manifest.json                                what is inside and which umlkit wrote it
    synthetic/<kind>-<folder>/...                the synthetic datasets (data/synthetic)
    arrays/<kind>-<split>-<identity>-<key>.npz   their decoded splits (data/cache/arrays)
    models/<hash>/...                            finished supervised runs (data/cache/models)
    semi/<hash>/...                              finished semi-supervised runs (data/cache/semi)

**What goes in, and why.**

* *Runs*: only finished ones (:func:`umlkit.runs.finished_checkpoints`) whose configuration,
  rebuilt from their ``config.json``, still hashes to their folder's name. A run trained by older
  code (another ``TRAINING_REVISION``) or on data regenerated since has a hash that no notebook
  asks for any more: packing it would only make the archive bigger.
* *The datasets*, although synthetic data are deterministic from their seed. The cache key
  contains a fingerprint of every byte of the dataset (:func:`umlkit.fingerprints.dataset_fingerprint`):
  a clone that regenerates the data gets the same key only if every PNG comes out byte for byte
  the same, which also depends on the numpy and Pillow versions installed. One byte off and every
  model is trained again, in the middle of the lab. Packing the data costs size (the default
  profile's three datasets are about 260 MB of PNG, beside about 330 MB of decoded splits and
  the runs) and a longer download, and buys certainty: import checks each dataset's fingerprint
  against the one recorded at export.
* *The decoded splits*, so that the first notebook does not decode thousands of images. Their
  file names are tied to the dataset's absolute folder and to its files' times
  (:func:`umlkit.data.base.array_cache_key`), which differ in another clone, so import names
  each one anew once the data are in place (after checking they are the same data).
* *Not the fingerprint cache* (``data/cache/fingerprints``): its files are named by the absolute
  path of a dataset folder and its entries by file times that unpacking cannot restore, so not
  one entry would be used in another clone. Import rebuilds it: checking the imported datasets'
  fingerprints stores their digests there.

**Profiles.** A run records its dataset folder (``data_root`` in ``config.json``), named
``<kind>-<profile folder>``, e.g. ``derm-default``. ``--profile`` packs the runs and datasets of
that folder. The reference profile reads the default profile's data, so the two cannot be told
apart: ``--profile default`` and ``--profile reference`` pack the runs of both. Without
``--profile`` everything is packed. Runs on real data (outside ``data/synthetic``) are never
packed: the data are not umlkit's to hand out.

**Import is careful.** Nothing is written until the whole archive has been read and checked:
a member with an absolute path or ``..`` (which could write outside ``data/``), a link, an
archive from another umlkit version or revision (whose models no notebook here would load), or
a file here that differs from the archive's (``--overwrite`` replaces it) is refused in one line.
Files already here and identical are left as they are.
"""

from umlkit.cache.archives import CacheFolders
from umlkit.cache.exporting import export_cache
from umlkit.cache.importing import ImportReport, import_cache

__all__ = ["CacheFolders", "ImportReport", "export_cache", "import_cache"]
