"""Model families; importing this package registers every model type (for ``from_pretrained``)."""
from leangen.models import discriminators, stylegan2  # noqa: F401
from leangen.models.base import MODEL_TYPES, PretrainedModel, StyleGenerator

__all__ = ["MODEL_TYPES", "PretrainedModel", "StyleGenerator"]
from leangen.models import cips, pixelfolder  # noqa: F401
from leangen.models import conv_translator, independent_pixels  # noqa: F401
from leangen.models import asapnet, multiscale_discriminator  # noqa: F401
from leangen.models import ar_decoder, spn, spn_chain  # noqa: F401
from leangen.models import resnet_generator, unet_generator  # noqa: F401
from leangen.models import stylenat, wavelet_discriminator  # noqa: F401
from leangen.models import pix2pixhd, spade  # noqa: F401
