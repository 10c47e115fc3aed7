// Word lists for the synthetic corpus. Each list is split in two: `train` feeds the training corpus,
// `heldOut` only the evaluation sets, so the eval measures copying and reasoning on names, cities,
// words and tools the model never saw in training.

function split(all, heldOutEvery) {
  // Every k-th entry is held out: deterministic, and both halves cover the list's whole range.
  return {
    train: all.filter((_, i) => i % heldOutEvery !== heldOutEvery - 1),
    heldOut: all.filter((_, i) => i % heldOutEvery === heldOutEvery - 1),
  };
}

export const NAMES = split([
  'Alice', 'Bruno', 'Chen', 'Dana', 'Elif', 'Farid', 'Greta', 'Hugo', 'Ines', 'Jonas', 'Kira', 'Liam',
  'Maya', 'Nils', 'Olga', 'Pablo', 'Quinn', 'Rosa', 'Sami', 'Tara', 'Umar', 'Vera', 'Wen', 'Ximena',
  'Yusuf', 'Zoe', 'Aiko', 'Ben', 'Clara', 'Diego', 'Emma', 'Felix', 'Gina', 'Hana', 'Ivan', 'Julia',
  'Karim', 'Lena', 'Marco', 'Nora', 'Oscar', 'Priya', 'Rafael', 'Sofia', 'Tomas', 'Ursula', 'Victor',
  'Wanda', 'Yara', 'Zeno', 'Amara', 'Boris', 'Carmen', 'Dmitri', 'Eva', 'Fatima', 'Gustav', 'Helga',
  'Isaac', 'Jana', 'Kenji', 'Lucia', 'Mateo', 'Noor', 'Otto', 'Paula', 'Rui', 'Sara', 'Theo', 'Uma',
  'Anders', 'Bea', 'Cyrus', 'Delia', 'Emil', 'Freya', 'Goran', 'Hiro', 'Ilse', 'Jamal', 'Katya', 'Leon',
  'Mira', 'Nico', 'Ola', 'Pia', 'Raj', 'Selma', 'Timo', 'Vito', 'Wilma', 'Xavier', 'Yoko', 'Zara',
  'Björn', 'Chloé', 'José', 'Zoë', 'Søren', 'Łukasz', 'Ana', 'Arjun', 'Mei', 'Tobias',
], 6);

export const CITIES = split([
  'Paris', 'Berlin', 'Tokyo', 'Lima', 'Oslo', 'Cairo', 'Madrid', 'Rome', 'Vienna', 'Prague', 'Dublin',
  'Lisbon', 'Athens', 'Warsaw', 'Seoul', 'Delhi', 'Nairobi', 'Sydney', 'Toronto', 'Denver', 'Boston',
  'Chicago', 'Austin', 'Miami', 'Havana', 'Quito', 'Bogota', 'Santiago', 'Montreal', 'Helsinki',
  'Stockholm', 'Copenhagen', 'Amsterdam', 'Brussels', 'Geneva', 'Milan', 'Naples', 'Porto', 'Seville',
  'Valencia', 'Munich', 'Hamburg', 'Cologne', 'Dresden', 'Budapest', 'Bucharest', 'Sofia', 'Riga',
  'Tallinn', 'Vilnius', 'Kyiv', 'Istanbul', 'Ankara', 'Tehran', 'Dubai', 'Doha', 'Mumbai', 'Kolkata',
  'Dhaka', 'Bangkok', 'Hanoi', 'Manila', 'Jakarta', 'Perth', 'Auckland', 'Osaka', 'Kyoto', 'Beijing',
  'Shanghai', 'Taipei', 'Accra', 'Lagos', 'Dakar', 'Tunis', 'Rabat', 'Lusaka', 'Harare', 'Durban',
  'Zürich', 'São Paulo', 'Kraków', 'Malmö', 'Reykjavík', 'Bern', 'Basel', 'Lyon', 'Nice', 'Bordeaux',
  'Glasgow', 'Leeds', 'Cork', 'Turin', 'Genoa', 'Bilbao', 'Graz', 'Salzburg', 'Bergen', 'Aarhus',
  'Gdańsk', 'Brno', 'Split', 'Zagreb', 'Belgrade', 'Skopje', 'Tirana', 'Minsk', 'Tbilisi', 'Yerevan',
  'Baku', 'Almaty', 'Tashkent', 'Kabul', 'Lahore', 'Karachi', 'Colombo', 'Kathmandu', 'Hobart',
  'Darwin', 'Calgary', 'Ottawa', 'Quebec', 'Halifax', 'Seattle', 'Portland', 'Phoenix', 'Dallas',
  'Houston', 'Atlanta', 'Detroit', 'Memphis', 'Nashville', 'Orlando', 'Tampa', 'Caracas', 'La Paz',
  'Asunción', 'Montevideo', 'Córdoba', 'Recife', 'Manaus', 'Cusco', 'Medellín', 'Panama', 'San José',
], 6);

export const COLORS = split(['red', 'blue', 'green', 'yellow', 'purple', 'orange', 'black', 'white',
  'pink', 'brown', 'grey', 'teal', 'gold', 'silver', 'violet', 'amber', 'indigo', 'coral'], 6);

export const PETS = split(['Rex', 'Luna', 'Milo', 'Bella', 'Max', 'Coco', 'Nala', 'Leo', 'Daisy',
  'Rocky', 'Bingo', 'Pepper', 'Simba', 'Oreo', 'Ziggy', 'Biscuit', 'Mango', 'Pixel'], 6);

export const ANIMALS = ['dog', 'cat', 'parrot', 'rabbit', 'hamster', 'turtle'];

export const FOODS = split(['pizza', 'sushi', 'pasta', 'tacos', 'curry', 'soup', 'salad', 'noodles',
  'dumplings', 'pancakes', 'risotto', 'falafel', 'paella', 'ramen', 'burritos', 'lasagna', 'kebab',
  'waffles'], 6);

/** Words for the string tasks: lower-case, 3 to 9 letters. */
export const WORDS = split([
  'apple', 'river', 'planet', 'garden', 'window', 'pencil', 'rocket', 'silver', 'butter', 'candle',
  'dragon', 'forest', 'guitar', 'hammer', 'island', 'jacket', 'kitten', 'ladder', 'mirror', 'number',
  'orange', 'pepper', 'rabbit', 'saddle', 'tunnel', 'velvet', 'wizard', 'yellow', 'zipper', 'anchor',
  'bottle', 'cactus', 'desert', 'engine', 'falcon', 'ginger', 'harbor', 'igloo', 'jungle', 'kettle',
  'lemon', 'magnet', 'needle', 'oyster', 'parrot', 'quartz', 'ribbon', 'summer', 'ticket', 'unicorn',
  'violin', 'walrus', 'yogurt', 'zebra', 'bread', 'cloud', 'dance', 'eagle', 'flame', 'grape',
  'house', 'juice', 'knife', 'light', 'mouse', 'night', 'ocean', 'piano', 'queen', 'robot', 'snake',
  'tiger', 'urban', 'voice', 'water', 'youth', 'cat', 'dog', 'sun', 'moon', 'star', 'tree', 'fish',
  'bird', 'book', 'lamp', 'ship', 'frog', 'milk', 'salt', 'rain', 'snow', 'wind', 'gold', 'iron',
  'stone', 'table', 'chair', 'music', 'paper', 'shadow', 'winter', 'spring', 'autumn', 'button',
  'castle', 'copper', 'cotton', 'danger', 'finger', 'flower', 'honey', 'letter', 'market', 'monkey',
  'orchid', 'pillow', 'puzzle', 'rumble', 'sister', 'spider', 'sugar', 'thunder', 'turkey', 'wallet',
  'banana', 'cherry', 'melon', 'peach', 'plum', 'mango', 'olive', 'onion', 'potato', 'tomato',
  'carrot', 'bridge', 'camera', 'circle', 'doctor', 'energy', 'family', 'friend', 'galaxy', 'helmet',
  'insect', 'kernel', 'lizard', 'meadow', 'nickel', 'office', 'palace', 'rescue', 'school', 'temple',
  'valley', 'wonder', 'basket', 'blanket', 'compass', 'diamond', 'feather', 'harvest', 'lantern',
  'morning', 'picture', 'rainbow', 'station', 'teacher', 'village', 'whisper',
], 6);

/**
 * "get_<attribute>" lookup tools: each answers "What is the <attribute> in <city>?" with a number or a
 * word. Held-out attributes make unseen tools whose name the model can only find by matching the
 * user's words against the tool list.
 */
export const CITY_ATTRIBUTES = split([
  { key: 'population', noun: 'population', desc: 'Get the population of a city', value: (r) => r.int(20, 9000) * 1000, unit: '' },
  { key: 'time', noun: 'local time', desc: 'Get the current local time in a city', value: (r) => `${String(r.int(0, 23)).padStart(2, '0')}:${String(r.int(0, 59)).padStart(2, '0')}`, unit: '' },
  { key: 'humidity', noun: 'humidity', desc: 'Get the current relative humidity in a city, in percent', value: (r) => r.int(10, 99), unit: '%' },
  { key: 'elevation', noun: 'elevation', desc: 'Get the elevation of a city above sea level, in metres', value: (r) => r.int(1, 3900), unit: ' m' },
  { key: 'timezone', noun: 'time zone', desc: 'Get the time zone of a city', value: (r) => `UTC${r.pick(['+', '-'])}${r.int(0, 11)}`, unit: '' },
  { key: 'air_quality', noun: 'air quality', desc: 'Get the air quality index of a city', value: (r) => r.int(5, 300), unit: '' },
  { key: 'sunrise', noun: 'sunrise time', desc: 'Get the time of sunrise in a city today', value: (r) => `0${r.int(4, 8)}:${String(r.int(0, 59)).padStart(2, '0')}`, unit: '' },
  { key: 'wind_speed', noun: 'wind speed', desc: 'Get the current wind speed in a city, in km/h', value: (r) => r.int(0, 90), unit: ' km/h' },
  { key: 'currency', noun: 'currency', desc: 'Get the currency used in a city', value: (r) => r.pick(['euro', 'dollar', 'yen', 'peso', 'franc', 'krona', 'rupee', 'pound']), unit: '' },
  { key: 'area', noun: 'area', desc: 'Get the area of a city, in square kilometres', value: (r) => r.int(30, 2500), unit: ' km²' },
  { key: 'rainfall', noun: 'rainfall', desc: 'Get the rainfall in a city today, in millimetres', value: (r) => r.int(0, 60), unit: ' mm' },
  { key: 'uv_index', noun: 'UV index', desc: 'Get the current UV index in a city', value: (r) => r.int(0, 11), unit: '' },
  { key: 'language', noun: 'main language', desc: 'Get the main language spoken in a city', value: (r) => r.pick(['English', 'Spanish', 'French', 'German', 'Arabic', 'Hindi', 'Portuguese', 'Japanese']), unit: '' },
  { key: 'sunset', noun: 'sunset time', desc: 'Get the time of sunset in a city today', value: (r) => `${r.int(16, 21)}:${String(r.int(0, 59)).padStart(2, '0')}`, unit: '' },
  { key: 'pollen_level', noun: 'pollen level', desc: 'Get the pollen level in a city today', value: (r) => r.pick(['low', 'medium', 'high']), unit: '' },
], 5);

export const SKIES = ['clear', 'cloudy', 'rainy', 'sunny', 'foggy', 'windy', 'snowy', 'stormy'];

export const BOOK_TOPICS = split(['dragons', 'space travel', 'cooking', 'gardening', 'chess', 'history',
  'robots', 'the ocean', 'mountains', 'jazz', 'painting', 'birds', 'coffee', 'volcanoes', 'poetry',
  'trains', 'mushrooms', 'pirates'], 6);

export const CURRENCIES = ['EUR', 'USD', 'JPY', 'GBP', 'CHF', 'SEK', 'INR', 'BRL', 'CAD', 'AUD'];
