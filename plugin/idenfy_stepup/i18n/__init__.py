"""The pages' languages: which ones ship, how a request picks one, and the catalogues.

``negotiation`` reads ``ui_locales`` and ``Accept-Language``; ``catalogues`` loads the ``.po``
files under ``locales/`` at start-up; ``pages`` holds one template environment per language;
``extract`` rebuilds the ``.pot`` template from the templates, the page texts and the outcome
table (``python -m idenfy_stepup.i18n.extract``, docs/translations.md).
"""

from __future__ import annotations

# Every language the package has a catalogue for; English is the source language (its
# catalogue is the msgids themselves).
SHIPPED = ("en", "de", "fr", "es", "lt")
SOURCE_LANGUAGE = "en"
