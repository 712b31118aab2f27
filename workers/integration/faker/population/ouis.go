package population

// Vendor is a manufacturer with some of its IEEE-assigned OUIs (MA-L blocks)
// and the kinds of device it makes.
type Vendor struct {
	// Name is how inventories name the manufacturer.
	Name string
	// OUIs are real IEEE MA-L assignments of the vendor, as six upper-case
	// hex digits.
	OUIs []string
	// Kinds are the generic kinds of device the vendor makes (see the Kind
	// constants), most common first.
	Kinds []Kind
}

// Kind is a generic kind of network device; the Faker writes it as the
// device's type and the emulators map it to their own vocabularies.
type Kind string

// The kinds of device the population holds.
const (
	KindWorkstation Kind = "workstation"
	KindLaptop      Kind = "laptop"
	KindServer      Kind = "server"
	KindVM          Kind = "vm"
	KindSwitch      Kind = "switch"
	KindRouter      Kind = "router"
	KindFirewall    Kind = "firewall"
	KindAccessPoint Kind = "access-point"
	KindCamera      Kind = "camera"
	KindPrinter     Kind = "printer"
	KindPhone       Kind = "phone"
	KindIPPhone     Kind = "ip-phone"
	KindPLC         Kind = "plc"
	KindMedical     Kind = "infusion-pump"
	KindHandheld    Kind = "handheld"
)

// Vendors are the manufacturers the population draws from: 512 real OUIs in
// all, picked from the IEEE registry (Debian's ieee-data oui.csv), a multiple
// of four per vendor so that each Realm gets its own quarter of every
// vendor's OUIs (OUI j of a vendor belongs to realm j%4+1). None of them is a
// prefix that first-hop redundancy protocols or Cisco's vPC use for virtual
// MACs (00:00:0C, 00:05:73, 00:07:B4, 00:00:5E, 00:23:04), so a generated MAC
// is never mistaken for a virtual one.
var Vendors = []Vendor{
	{"Cisco", []string{
		"000142", "00027E", "0003FE", "000531", "0006C1", "000821", "000943", "000AF4", "000CCE", "000ED6", "00101F", "001193",
		"00137F", "001562", "001759", "00192F", "001AE2", "001C58", "001E14", "001FC9", "002290", "002450", "00260A", "002A6A",
		"0030F2", "00425A", "0050BD", "006070", "008E73", "0090F2", "00B08E", "00D006", "00D78F", "00EABD", "04A741", "08ECF5",
		"10A829", "189C5D", "204C9E", "2893FE", "2C5741", "346F90", "3C08F6", "404244", "44D3CA", "5006AB", "5475D0", "58BC27",
		"6400F1", "6887C6", "6C4EF6", "700B4F", "70A983", "7488BB", "7C69F6", "848A8D", "8C1E80", "A00F37", "A44C11", "AC2AA1",
		"B08BD0", "B8A377", "C014FE", "C47D4F", "CC70ED", "D072DC", "D4AD71", "DC8C37", "E4AA5D", "EC1D8B", "F0B2E5", "F866F2",
	}, []Kind{KindSwitch, KindRouter, KindAccessPoint, KindIPPhone, KindFirewall}},
	{"Dell", []string{
		"00065B", "000BDB", "001143", "001422", "0019B9", "001D09", "002170", "0023AE", "0026B9", "00BE43", "089204", "107D1A",
		"149ECF", "180373", "18A99B", "1C4024", "204747", "24B6FD", "30D042", "34735A", "3C2C30", "484D7E", "509A4C", "54BF64",
		"5CF9DD", "64006A", "6C3C8C", "747827", "74E6E2", "78AC44", "847BEB", "8C04BA", "908D6E", "989096", "A41F72", "A4BB6D",
		"B07B25", "B4E10F", "B8AC6F", "BC305B", "C45AB1", "C8F750", "CCC5E5", "D08E79", "D4AE52", "D8D090", "E0DB55", "E4B97A",
		"EC2A72", "F04DA2", "F48E38", "F8BC12",
	}, []Kind{KindLaptop, KindWorkstation, KindServer}},
	{"HP", []string{
		"0001E6", "0004EA", "0008C7", "000E7F", "000F61", "001185", "0014C2", "001708", "0019BB", "001CC4", "002264", "0025B3",
		"0030C1", "0080A0", "082E5F", "10E7C6", "18A905", "288023", "2C4138", "2C768A", "3863BB", "3C5282", "40B034", "480FCF",
		"5820B1", "645106", "6CC217", "78ACC0", "80C16E", "843497", "9457A5", "9C7BEF", "A02BB8", "A0B3CC", "AC162D", "B499BA",
		"B8AF67", "C8CBB8", "CC3E5F", "D48564", "DC4A3E", "E83935", "F0921C", "F4CE46",
	}, []Kind{KindWorkstation, KindLaptop, KindPrinter}},
	{"HPE", []string{
		"001438", "040973", "1402EC", "20A6CD", "34FCB9", "4448C1", "4CAEA3", "5CBA2C", "8030E0", "904C81", "9440C9", "9C8CD8",
		"B0B867", "C8B5AD", "D89403", "E8F724",
	}, []Kind{KindServer, KindSwitch}},
	{"Apple", []string{
		"000393", "0021E9", "006171", "044BED", "086D41", "0C74C2", "14205E", "182032", "1C36BB", "2078CD", "24D0DF", "28E02C",
		"2CBE08", "3451C9", "38CADA", "403004", "440010", "48437C", "4C7CD9", "540910", "586B14", "5C95AE", "609316", "6476BA",
		"68D93C", "6CE5C9", "70E72C", "783A84", "7C2499", "800C67", "848506", "886440", "8C7B9D", "909C4A", "94F6D6", "9C04EB",
		"9CFC28", "A4C337", "A886DD", "AC7F3E", "B09FBA", "B4FA48", "B8C111", "BCB863", "C0E862", "C869CD", "CC69FA", "D0DAD7",
		"D89695", "DC86D8", "E0C97A", "E4E4AB", "EC42CC", "F0B479", "F45C89", "F87D76",
	}, []Kind{KindLaptop, KindPhone, KindWorkstation}},
	{"Lenovo", []string{
		"10C595", "809621", "A41194", "A48CDB",
	}, []Kind{KindLaptop, KindWorkstation, KindServer}},
	{"Intel", []string{
		"0012F0", "0018DE", "001F3B", "0026C6", "00D76D", "081196", "0C9192", "10F60A", "18CC18", "247703", "2C3358", "340286",
		"34F64B", "3CA9F4", "444988", "4C034F", "5076AF", "5891CF", "5CCD5B", "60F677", "680715", "6CFE54", "743AF4", "7C2A31",
		"801934", "847B57", "8C705A", "90CCDF", "98541B", "A08069", "A44E31", "AC2B6E", "B07D64", "B808CF", "BC6EE2", "C48508",
		"C8F733", "D43B04", "DC215C", "E09D31", "E4A7A0", "F057A6", "F46D3F", "F85EA0",
	}, []Kind{KindWorkstation, KindServer, KindLaptop}},
	{"VMware", []string{
		"000569", "000C29", "001C14", "005056",
	}, []Kind{KindVM}},
	{"Microsoft", []string{
		"0003FF", "042728", "206274", "441622", "74E28C", "9C6C15", "C461C7", "DC9840",
	}, []Kind{KindVM, KindLaptop}},
	{"Juniper", []string{
		"000585", "0017CB", "001F12", "0024DC", "00C52C", "0805E2", "0C8610", "182AD3", "20D80B", "28C0DA", "307C5E", "3C8AB0",
		"40A677", "44ECCE", "4C6D58", "50C709", "5800BB", "64649B", "74E798", "78FE3D", "807FF8", "841888", "8828FB", "88E0F3",
		"9CC893", "A8D0E5", "B0A86E", "C00380", "C8E7F0", "D007CA", "D8539A", "E0F62D", "E8B6C2", "EC7C5C", "F07CC7", "F4CC55",
	}, []Kind{KindRouter, KindSwitch, KindFirewall}},
	{"Arista", []string{
		"001C73", "28993A", "28E71D", "2CDDE9", "5C16C7", "7483EF", "948ED3", "985D82", "C0D682", "C4CA2B", "D4AFF7", "E8AEC5",
	}, []Kind{KindSwitch, KindRouter}},
	{"Aruba", []string{
		"000B86", "04BD88", "186472", "204C03", "28DE65", "3810F0", "40E3D6", "48B4C3", "6CC49F", "749E75", "883A30", "9460D5",
		"9C1C12", "ACA31E", "B8D4E7", "CC88C7", "D04DC6", "DCB7AC", "EC50AA", "F061C0",
	}, []Kind{KindAccessPoint, KindSwitch}},
	{"Hikvision", []string{
		"040312", "08A189", "240F9B", "2432AE", "3C1BF8", "4419B6", "4CBD8F", "54C415", "64DB8B", "80BEAF", "94E1AC", "989DE5",
		"A0FF0C", "ACB92F", "BC5E33", "BCAD28", "C056E3", "C42F90", "E0CA3C", "ECC89C",
	}, []Kind{KindCamera}},
	{"Samsung", []string{
		"0000F0", "001C43", "002490", "00FA21", "08BFA0", "1007B6", "1432D1", "183F47", "1C66AA", "240935", "288335", "30D587",
		"386A77", "3CF7A4", "485169", "5056BF", "54B802", "5C865C", "60C5AD", "64E7D8", "6C8336", "74EB80", "78F7BE", "801970",
		"8425DB", "88ADD2", "9097F3", "94E129", "9C65B0", "A0D05B", "A8346A", "ACEE9E", "B4BFF6", "BC455B", "C03D03", "C4731E",
		"CC07AB", "D087E2", "D80B9A", "DCCF96", "E47CF9", "E8AACB", "F0E77E", "F877B8",
	}, []Kind{KindPhone, KindHandheld}},
	{"Siemens", []string{
		"0001E3", "000BA3", "000E8C", "080006", "10DFFC", "208756", "286336", "384B24", "40ECF8", "883F99", "AC6417", "D4F527",
	}, []Kind{KindPLC}},
	{"Rockwell Automation", []string{
		"0000BC", "001D9C", "086195", "34C0F9", "404101", "5C2167", "68C8EB", "E49069",
	}, []Kind{KindPLC}},
	{"Xerox", []string{
		"000002", "000003", "000004", "000006", "000007", "000008", "0000AA", "9C934E",
	}, []Kind{KindPrinter}},
	{"Supermicro", []string{
		"002590", "003048", "3CECEF", "7CC255",
	}, []Kind{KindServer}},
	{"Zebra", []string{
		"000512", "001570", "00A0F8", "84248D",
	}, []Kind{KindHandheld, KindPrinter}},
	{"Ubiquiti", []string{
		"00156D", "0418D6", "245A4C", "44D9E7", "68D79A", "7483C2", "784558", "802AA8", "B4FBE4", "DC9FDB", "E43883", "F492BF",
	}, []Kind{KindAccessPoint, KindSwitch}},
	{"Fortinet", []string{
		"00090F", "000CE6", "04D590", "085B0E", "704CA5", "906CAC", "94F392", "94FF3C", "AC712E", "D476A0", "E023FF", "E81CBA",
	}, []Kind{KindFirewall}},
	{"Palo Alto Networks", []string{
		"001B17", "080342", "08661F", "34E5EC", "5C58E6", "786D94", "84D412", "945641", "C42456", "D49CF4", "DC0E96", "E8986D",
	}, []Kind{KindFirewall}},
	{"Brother", []string{
		"001BA9", "008077", "30055C", "3C2AF4",
	}, []Kind{KindPrinter}},
	{"Lexmark", []string{
		"000400", "002000", "0021B7", "0084ED",
	}, []Kind{KindPrinter}},
}
